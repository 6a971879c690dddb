"""The one place a verdict is made: query hashes, matches and list states in, ``Verdict`` out.

``Scanner.scan``, ``Scanner.lookup`` and the retroactive matcher all end here, so a stale or
never-synced list, an upload that could not be hashed and bytes that are not media are
treated the same way whichever door the hashes came in by. The decision-log row of a verdict
is built here too (``decision_record``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from ._action import Action
from ._errors import UnknownHashTypeError, UploadScanError
from ._policy import decide, list_problems
from ._verdict import Match, ScanErrorInfo, Verdict, new_verdict_id
from .hashing._registry import registry
from .store._audit import DecisionOrigin, DecisionRecord, ReviewStatus
from .store._lists import HashList


def judge(
    matches: Sequence[Match],
    lists: Mapping[str, HashList],
    *,
    hashes: Mapping[str, Sequence[str]],
    fail_mode: Action,
    non_media: Action | None = None,
    errors: Sequence[UploadScanError] = (),
    error_prefix: str | None = None,
    media_type: str | None = None,
    started: float | None = None,
    verdict_id: str | None = None,
    now: float | None = None,
) -> Verdict:
    """The verdict for one upload (or one set of given hashes).

    ``lists`` are the lists consulted, as they were when ``matches`` were found; their sync
    state is judged at ``now``. ``non_media`` is the action for bytes that are not media
    (``None`` when they are media, or no upload was given). ``error_prefix`` names the upload
    in error messages. ``started`` (``perf_counter``) dates the work for ``elapsed_ms``.
    """
    now = time.time() if now is None else now
    decision = decide(
        matches,
        fail_mode=fail_mode,
        hashing_failed=bool(errors),
        list_problems=list_problems(lists, now),
        non_media=non_media,
    )
    elapsed = 0.0 if started is None else (time.perf_counter() - started) * 1000.0
    return Verdict(
        action=decision.action,
        matches=tuple(matches),
        hashes={k: _shown(k, v) for k, v in hashes.items()},
        errors=tuple(
            ScanErrorInfo(type(e).__name__, f"{error_prefix}: {e}" if error_prefix else str(e))
            for e in errors
        ),
        list_versions={name: hl.version for name, hl in lists.items()},
        reasons=decision.reasons,
        media_type=media_type,
        elapsed_ms=elapsed,
        id=verdict_id or new_verdict_id(),
        created=now,
    )


def _shown(hash_type: str, values: Sequence[str]) -> tuple[str, ...]:
    """Values as verdicts show them: a TMK value is 351,125 characters, so types abbreviate
    what is too big for a verdict, a JSON answer or a decision-log row (``short_form``)."""
    try:
        shown = registry.get(hash_type).short_form
    except UnknownHashTypeError:
        return tuple(values)
    return tuple(shown(v) for v in values)


def decision_record(
    verdict: Verdict, *, sha256: str | None, origin: DecisionOrigin
) -> DecisionRecord:
    """The decision-log row for ``verdict``: hashes, outcome and list versions, no content.
    REVIEW verdicts enter the review queue as pending."""
    queued = verdict.action is Action.REVIEW
    return DecisionRecord(
        verdict_id=verdict.id,
        action=verdict.action,
        time=verdict.created,
        sha256=sha256,
        matches=tuple(m.to_dict() for m in verdict.matches),
        list_versions=dict(verdict.list_versions),
        errors=tuple(e.to_dict() for e in verdict.errors),
        hashes={k: tuple(v) for k, v in verdict.hashes.items()},
        origin=origin,
        review_status=ReviewStatus.PENDING if queued else None,
    )
