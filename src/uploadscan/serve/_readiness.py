"""What ``GET /ready`` answers: whether every verdict the service gives now can be complete.

A load balancer should stop sending uploads to a service whose verdicts would all take the fail
mode, or would all allow: when no list is configured, or when a block or review list has never
completed a sync or is older than its maximum age. The judgement is the one verdicts make
(``_policy.list_problems``), so ``/ready`` and the verdicts' ``reasons`` never disagree.
"""

from __future__ import annotations

from typing import Any

from .._policy import list_problems
from ..store._lists import HashList, SyncState

__all__ = ["readiness"]

_PROBLEM_TEXT = {
    SyncState.NEVER_SYNCED: "has never completed a sync",
    SyncState.STALE: "is not synced within its maximum age",
}


def readiness(store_version: int, lists: list[HashList], now: float) -> dict[str, Any]:
    """The ``/ready`` body: each list's sync state, and why the service is not ready (a block
    or review list that would put every verdict in the fail mode, or no list at all). Lists
    marked ``warn_only`` are reported as warnings and do not make the service unready."""
    problems: list[dict[str, Any]] = []
    warnings: list[str] = []
    for problem in list_problems({hl.name: hl for hl in lists}, now):
        text = f"list {problem.name} {_PROBLEM_TEXT[problem.state]}"
        if problem.warn_only:
            warnings.append(f"{text} (warn only)")
        else:
            problems.append(
                {
                    "list": problem.name,
                    "state": problem.state.value,
                    "message": f"{text}: every verdict takes the fail mode",
                }
            )
    if not lists:
        problems.append(
            {
                "list": None,
                "state": "no_lists",
                "message": "no hash lists are configured: every upload would be allowed",
            }
        )
    shown = []
    for hl in lists:
        age = None if hl.last_sync is None else max(0.0, now - hl.last_sync)
        shown.append(
            {
                "name": hl.name,
                "kind": hl.kind.value,
                "version": hl.version,
                "entry_count": hl.entry_count,
                "last_sync": hl.last_sync,
                "age_seconds": None if age is None else round(age, 3),
                "max_age_seconds": hl.settings.max_age(hl.source_kind),
                "sync_state": hl.sync_state(now).value,
            }
        )
    return {
        "status": "not_ready" if problems else "ready",
        "store_version": store_version,
        "lists": shown,
        "problems": problems,
        "warnings": warnings,
    }
