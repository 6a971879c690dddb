"""Policy: list kinds, distance bands, label filters, allowlist override, fail mode."""

from __future__ import annotations

import pytest

from uploadscan import Action, ListKind, ListSettings, hashtypes
from uploadscan._policy import ListProblem, decide, labels_pass, match_action
from uploadscan._verdict import Match
from uploadscan.store._lists import HashList, SyncState

PDQ = hashtypes.get("pdq")
MD5 = hashtypes.get("md5")


def make_list(kind: ListKind, **settings: object) -> HashList:
    return HashList(
        name=f"{kind.value}-list",
        kind=kind,
        source=None,
        settings=ListSettings.from_dict(settings),
        checkpoint=None,
        version=1,
        last_sync=None,
        created=0.0,
        entry_count=1,
    )


def make_match(hash_list: HashList, distance: int, hash_type: str = "pdq") -> Match:
    return Match(
        list_name=hash_list.name,
        list_kind=hash_list.kind,
        list_version=hash_list.version,
        entry_id=1,
        hash_type=hash_type,
        value="00",
        distance=distance,
        action=match_action(hash_list, hashtypes.get(hash_type), distance),
    )


def test_kind_sets_the_action() -> None:
    assert match_action(make_list(ListKind.BLOCK), PDQ, 3) is Action.BLOCK
    assert match_action(make_list(ListKind.REVIEW), PDQ, 3) is Action.REVIEW
    assert match_action(make_list(ListKind.ALLOW), PDQ, 3) is Action.ALLOW


@pytest.mark.parametrize(
    ("distance", "expected"), [(0, "block"), (15, "block"), (16, "review"), (31, "review")]
)
def test_distance_band_sends_far_matches_to_review(distance: int, expected: str) -> None:
    blocklist = make_list(ListKind.BLOCK, pdq_action_distance=15)
    assert match_action(blocklist, PDQ, distance).value == expected
    # Exact digests are never banded.
    assert match_action(blocklist, MD5, 0) is Action.BLOCK


def test_allowlist_overrides_block() -> None:
    block, allow = make_list(ListKind.BLOCK), make_list(ListKind.ALLOW)
    decision = decide([make_match(block, 2), make_match(allow, 5)], fail_mode=Action.REVIEW)
    assert decision.action is Action.ALLOW
    assert "overrides 1 match" in decision.reasons[0]


def test_most_severe_match_wins() -> None:
    block, review = make_list(ListKind.BLOCK), make_list(ListKind.REVIEW)
    decision = decide([make_match(review, 1), make_match(block, 20)], fail_mode=Action.ALLOW)
    assert decision.action is Action.BLOCK
    assert decide([], fail_mode=Action.BLOCK).action is Action.ALLOW


@pytest.mark.parametrize("fail_mode", list(Action))
def test_fail_mode_applies_to_hashing_errors_and_stale_lists(fail_mode: Action) -> None:
    assert decide([], fail_mode=fail_mode, hashing_failed=True).action is fail_mode
    for state in (SyncState.STALE, SyncState.NEVER_SYNCED):
        problems = [ListProblem("gifct", state, warn_only=False)]
        stale = decide([], fail_mode=fail_mode, list_problems=problems)
        assert stale.action is fail_mode
        assert "gifct" in stale.reasons[0] and "incomplete" in stale.reasons[0]
        # warn_only names the list without forcing the fail mode.
        warned = decide([], fail_mode=fail_mode, list_problems=[ListProblem("x", state, True)])
        assert warned.action is Action.ALLOW and "warn only" in warned.reasons[0]
    block = make_list(ListKind.BLOCK)
    # A real block is never softened by the fail mode.
    assert (
        decide([make_match(block, 0)], fail_mode=fail_mode, hashing_failed=True).action
        is Action.BLOCK
    )


def test_label_filter() -> None:
    filtered = make_list(ListKind.BLOCK, labels=["terrorism"])
    assert labels_pass(filtered, ("terrorism", "video"))
    assert not labels_pass(filtered, ("spam",))
    assert not labels_pass(filtered, ())
    assert labels_pass(make_list(ListKind.BLOCK), ())


def test_settings_reject_typos_and_bad_values() -> None:
    from uploadscan import ConfigError

    with pytest.raises(ConfigError, match="pdq_treshold"):
        ListSettings.from_dict({"pdq_treshold": 20})
    with pytest.raises(ConfigError, match="pdq_action_distance"):
        ListSettings(pdq_threshold=20, pdq_action_distance=25)
