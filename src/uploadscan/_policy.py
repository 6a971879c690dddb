"""From matches to one action: list kinds, review bands, allowlists, list health, fail mode.

Policy lives in data (each list's ``ListSettings``), not in code, so a trust-and-safety team can
tighten or loosen it without a deploy. The rules, in order:

1. A match only counts if its entry carries one of the list's ``labels`` (when any are set).
2. A match's own action is its list's kind; on a block list, a match beyond the hash type's
   review band (``pdq_action_distance`` for PDQ, when set) is sent to review instead — close
   matches are near-certain, distant ones deserve a human.
3. Any match on an allow list overrides block and review for that upload: wrongly hashed
   newsworthy or documentary material must stay up, and freedom of expression is part of the job.
4. Otherwise the most severe match wins; no match means allow.
5. When matching was incomplete — the upload is media that could not be hashed, or a block or
   review list never completed a sync or went stale — the verdict is at least the configured
   fail mode (default review), and the reasons say why. A list set to ``warn_only`` is named
   in the reasons without forcing the fail mode.
6. Bytes that are not media (a PDF, a ZIP) are matched by their exact hashes only; with no
   match they take the ``non_media`` action (default allow), and the reasons say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._verdict import Action, Match, most_severe
from .hashing._protocol import Closeness, HashType
from .store._lists import HashList, ListKind, SyncState

_KIND_ACTION = {ListKind.BLOCK: Action.BLOCK, ListKind.REVIEW: Action.REVIEW}


def labels_pass(hash_list: HashList, labels: Sequence[str]) -> bool:
    """True when the list acts on an entry with these labels."""
    wanted = hash_list.settings.labels
    return not wanted or any(label in wanted for label in labels)


def match_action(hash_list: HashList, hash_type: HashType, measure: float) -> Action:
    """The action one match on ``hash_list`` calls for, before allowlists are applied."""
    if hash_list.kind is ListKind.ALLOW:
        return Action.ALLOW
    action = _KIND_ACTION[hash_list.kind]
    setting = hash_type.review_band_setting
    band = hash_list.settings.get(setting) if setting is not None else None
    if action is Action.BLOCK and band is not None and not _inside(hash_type, measure, band):
        return Action.REVIEW
    return action


def _inside(hash_type: HashType, measure: float, band: float) -> bool:
    if hash_type.closeness is Closeness.SCORE:
        return measure >= band
    return measure <= band


@dataclass(frozen=True, slots=True)
class ListProblem:
    """A consulted list whose entries cannot be trusted to be current."""

    name: str
    state: SyncState
    warn_only: bool


def list_problems(lists: Mapping[str, HashList], now: float) -> list[ListProblem]:
    """Block and review lists that never completed a sync or went stale, by name."""
    out = []
    for name in sorted(lists):
        hash_list = lists[name]
        if hash_list.kind is ListKind.ALLOW:
            continue
        state = hash_list.sync_state(now)
        if state is not SyncState.CURRENT:
            out.append(ListProblem(name, state, hash_list.settings.warn_only))
    return out


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]


def decide(
    matches: Sequence[Match],
    *,
    fail_mode: Action,
    hashing_failed: bool = False,
    list_problems: Sequence[ListProblem] = (),
    non_media: Action | None = None,
) -> Decision:
    """Combine the matches of one upload into its action, with reasons a moderator can read.

    ``non_media`` is the action for bytes that are not media (``None``: the upload is media,
    or hashes were given without an upload).
    """
    reasons: list[str] = []
    allow_matches = [m for m in matches if m.list_kind is ListKind.ALLOW]
    flagging = [m for m in matches if m.list_kind is not ListKind.ALLOW]
    if allow_matches:
        names = sorted({m.list_name for m in allow_matches})
        if flagging:
            reasons.append(f"allowlist {', '.join(names)} overrides {len(flagging)} match(es)")
        else:
            reasons.append(f"on allowlist {', '.join(names)}")
        return Decision(Action.ALLOW, tuple(reasons))
    action = most_severe([m.action for m in flagging])
    if flagging:
        closest = flagging[0]
        reasons.append(
            f"matched {closest.list_name} ({closest.hash_type}, distance {closest.distance})"
        )
    if non_media is not None:
        reasons.append("not media: only exact hashes (MD5, SHA-256) applied")
        if not flagging:
            action = most_severe([action, non_media])
    if hashing_failed:
        reasons.append(f"the upload could not be fully hashed; fail mode is {fail_mode.value}")
        action = most_severe([action, fail_mode])
    for state in (SyncState.NEVER_SYNCED, SyncState.STALE):
        enforced = sorted(p.name for p in list_problems if p.state is state and not p.warn_only)
        warned = sorted(p.name for p in list_problems if p.state is state and p.warn_only)
        what = (
            "have never completed a sync"
            if state is SyncState.NEVER_SYNCED
            else "are not synced within their maximum age"
        )
        if enforced:
            reasons.append(
                f"list(s) {', '.join(enforced)} {what}: matching is incomplete; "
                f"fail mode is {fail_mode.value}"
            )
            action = most_severe([action, fail_mode])
        if warned:
            reasons.append(f"list(s) {', '.join(warned)} {what} (warn only)")
    return Decision(action, tuple(reasons))
