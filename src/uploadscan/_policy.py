"""From matches to one action: list kinds, distance bands, allowlists and the fail mode.

Policy lives in data (each list's ``ListSettings``), not in code, so a trust-and-safety team can
tighten or loosen it without a deploy. The rules, in order:

1. A match only counts if its entry carries one of the list's ``labels`` (when any are set).
2. A match's own action is its list's kind; on a block list, a PDQ match farther than
   ``pdq_action_distance`` (when set) is sent to review instead — close matches are near-certain,
   distant ones deserve a human.
3. Any match on an allow list overrides block and review for that upload: wrongly hashed
   newsworthy or documentary material must stay up, and freedom of expression is part of the job.
4. Otherwise the most severe match wins; no match means allow.
5. When the upload could not be hashed, or a consulted list is stale, the verdict is at least the
   configured fail mode (default review), and the reasons say why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._verdict import Action, Match, most_severe
from .store._lists import HashList, ListKind

_KIND_ACTION = {ListKind.BLOCK: Action.BLOCK, ListKind.REVIEW: Action.REVIEW}


def labels_pass(hash_list: HashList, labels: Sequence[str]) -> bool:
    """True when the list acts on an entry with these labels."""
    wanted = hash_list.settings.labels
    return not wanted or any(label in wanted for label in labels)


def match_action(hash_list: HashList, hash_type: str, distance: int) -> Action:
    """The action one match on ``hash_list`` calls for, before allowlists are applied."""
    if hash_list.kind is ListKind.ALLOW:
        return Action.ALLOW
    action = _KIND_ACTION[hash_list.kind]
    band = hash_list.settings.pdq_action_distance
    if action is Action.BLOCK and hash_type == "pdq" and band is not None and distance > band:
        return Action.REVIEW
    return action


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]


def decide(
    matches: Sequence[Match],
    *,
    fail_mode: Action,
    hashing_failed: bool = False,
    stale_lists: Sequence[str] = (),
) -> Decision:
    """Combine the matches of one upload into its action, with reasons a moderator can read."""
    reasons: list[str] = []
    allow_matches = [m for m in matches if m.list_kind == ListKind.ALLOW.value]
    flagging = [m for m in matches if m.list_kind != ListKind.ALLOW.value]
    if allow_matches:
        names = sorted({m.list_name for m in allow_matches})
        if flagging:
            reasons.append(f"allowlist {', '.join(names)} overrides {len(flagging)} match(es)")
        else:
            reasons.append(f"on allowlist {', '.join(names)}")
        return Decision(Action.ALLOW, tuple(reasons))
    action = most_severe([m.action for m in flagging])
    if flagging:
        closest = min(flagging, key=lambda m: m.distance)
        reasons.append(
            f"matched {closest.list_name} ({closest.hash_type}, distance {closest.distance})"
        )
    if hashing_failed:
        reasons.append(f"the upload could not be fully hashed; fail mode is {fail_mode.value}")
        action = most_severe([action, fail_mode])
    if stale_lists:
        reasons.append(
            f"list(s) {', '.join(sorted(stale_lists))} not synced within their maximum age; "
            f"fail mode is {fail_mode.value}"
        )
        action = most_severe([action, fail_mode])
    return Decision(action, tuple(reasons))
