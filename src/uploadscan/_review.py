"""The moderator's side: the review queue, decisions on it, and feedback to list publishers.

A REVIEW verdict is a question to a human. The answer is recorded against the verdict's id:
``confirm`` (the match was right) or ``overturn`` (a false positive). An overturn can put the
upload's hashes on an allow list, so the same content is not flagged again, and it becomes
false-positive feedback for the list's publisher — hashes, list, entry id and reason, never the
content itself. A confirm can put the upload's hashes on the platform's own block list.

Decisions can be changed. Each one records what it did to the lists (``ReviewEffect``: the
entries it wants there, and those it added), and changing it first undoes exactly that, so an
overturn changed to confirm no longer leaves the upload allowed. An entry another decision
still wants stays (and passes to that decision); one that was there before stays.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ._errors import ConfigError, InvalidHashError, ListNotFoundError, UnknownHashTypeError
from .hashing._registry import registry
from .store._audit import DecisionRecord, ReviewEffect, ReviewStatus
from .store._lists import EntryUpsert, ListKind
from .store._store import Store


class ReviewDecision(Enum):
    """What a moderator says about a REVIEW verdict."""

    CONFIRM = "confirm"
    OVERTURN = "overturn"

    @property
    def status(self) -> ReviewStatus:
        return ReviewStatus.CONFIRMED if self is ReviewDecision.CONFIRM else ReviewStatus.OVERTURNED

    @classmethod
    def parse(cls, value: str | ReviewDecision) -> ReviewDecision:
        if isinstance(value, ReviewDecision):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(
                f"review decision must be 'confirm' or 'overturn', got {value!r}"
            ) from None


def review_queue(store: Store, *, limit: int | None = None) -> list[DecisionRecord]:
    """Decisions still waiting for a moderator, oldest first."""
    return store.decisions(review_status=ReviewStatus.PENDING, limit=limit)


@dataclass(frozen=True, slots=True)
class PlannedEntries:
    """Entries a decision wants on a list (the caller computed them, e.g. from media)."""

    list_name: str
    kind: ListKind
    upserts: tuple[EntryUpsert, ...]


def record_review(
    store: Store,
    verdict_id: str,
    decision: ReviewDecision | str,
    *,
    note: str | None = None,
    allowlist: str | None = None,
    add: PlannedEntries | None = None,
) -> DecisionRecord:
    """Record ``confirm`` or ``overturn`` for a verdict, replacing any earlier decision.

    ``allowlist`` (overturns only) puts the upload's hashes on that allow list, creating it
    if needed. ``add`` puts further entries on a list (a confirm adding the upload's hashes to
    the platform's own block list). Whatever an earlier decision on this verdict added is
    removed first. Returns the updated record.
    """
    decision = ReviewDecision.parse(decision)
    record = store.decision(verdict_id)
    if allowlist is not None and decision is not ReviewDecision.OVERTURN:
        raise ConfigError("only an overturned verdict can be added to an allow list")
    planned: list[PlannedEntries] = []
    if allowlist is not None:
        planned.append(PlannedEntries(allowlist, ListKind.ALLOW, _allow_upserts(record)))
    if add is not None:
        planned.append(add)
    for plan in planned:
        _check_list(store, plan)
    _undo(store, record)
    effects = [_apply(store, verdict_id, plan) for plan in planned]
    store.set_review(verdict_id, decision.status, note, [e for e in effects if e.entries])
    return store.decision(verdict_id)


def _check_list(store: Store, plan: PlannedEntries) -> None:
    try:
        hash_list = store.get_list(plan.list_name)
    except ListNotFoundError:
        if plan.kind is ListKind.ALLOW:
            return  # created on first use
        raise
    if hash_list.kind is not plan.kind:
        raise ConfigError(
            f"list {plan.list_name!r} is a {hash_list.kind.value} list, "
            f"not a {plan.kind.value} list"
        )


def _allow_upserts(record: DecisionRecord) -> tuple[EntryUpsert, ...]:
    """The upload's hashes that matched (as queried) and its SHA-256."""
    upserts: list[EntryUpsert] = []
    seen: set[tuple[str, str]] = set()
    reference = f"overturned verdict {record.verdict_id}"
    for match in record.matches:
        query, hash_type = match.get("query"), match.get("hash_type")
        if not _listable(hash_type, query):
            continue  # shown abbreviated (a TMK value): the SHA-256 below still goes on
        if query and hash_type and (hash_type, query) not in seen:
            seen.add((hash_type, query))
            upserts.append(EntryUpsert(hash_type, query, ("overturned",), reference))
    if record.sha256 and ("sha256", record.sha256) not in seen:
        upserts.append(EntryUpsert("sha256", record.sha256, ("overturned",), reference))
    if not upserts:
        raise ConfigError(f"verdict {record.verdict_id} has no hashes to allowlist")
    return tuple(upserts)


def _listable(hash_type: object, value: object) -> bool:
    """Whether a match's query, as the decision log shows it, is a whole value of its type."""
    if not isinstance(hash_type, str) or not isinstance(value, str):
        return False
    try:
        registry.get(hash_type).validate(value)
    except (InvalidHashError, UnknownHashTypeError):
        return False
    return True


def _apply(store: Store, verdict_id: str, plan: PlannedEntries) -> ReviewEffect:
    try:
        store.get_list(plan.list_name)
    except ListNotFoundError:
        store.add_list(plan.list_name, kind=plan.kind, source=None)
    keys = list(dict.fromkeys((u.hash_type, u.value) for u in plan.upserts))
    present = store.live_keys(plan.list_name, keys)
    store.apply_batch(plan.list_name, list(plan.upserts), mark_synced=False)
    owned = tuple(key for key in keys if key not in present)
    return ReviewEffect(plan.list_name, tuple(keys), owned)


def _undo(store: Store, record: DecisionRecord) -> None:
    """Remove the entries an earlier decision on ``record`` put on lists, unless another
    decision still wants them (that one then becomes answerable for them) or they were there
    before it."""
    for effect in record.review_effects:
        try:
            store.get_list(effect.list_name)
        except ListNotFoundError:
            continue  # the list was removed since; nothing left to undo
        others = store.wanted_by_other_reviews(record.verdict_id, effect.list_name)
        gone = []
        for key in effect.owned:
            heir = others.get(key)
            if heir is None:
                gone.append(key)
            else:
                store.adopt_review_entries(heir, effect.list_name, [key])
        if gone:
            store.apply_batch(effect.list_name, [], gone, mark_synced=False)


def feedback(
    store: Store, *, since: float | None = None, until: float | None = None
) -> list[dict[str, Any]]:
    """False-positive reports for list publishers: one row per overturned match."""
    rows: list[dict[str, Any]] = []
    for record in store.decisions(since=since, until=until, review_status=ReviewStatus.OVERTURNED):
        for match in record.matches:
            if match.get("list_kind") == ListKind.ALLOW.value:
                continue
            rows.append(
                {
                    "time": _iso(record.reviewed_at or record.time),
                    "verdict_id": record.verdict_id,
                    "list": match.get("list"),
                    "entry_id": match.get("entry_id"),
                    "external_id": match.get("external_id"),
                    "hash_type": match.get("hash_type"),
                    "listed_hash": match.get("value"),
                    "upload_hash": match.get("query"),
                    "distance": match.get("distance"),
                    "reason": record.review_note or "",
                }
            )
    return rows


def _iso(seconds: float) -> str:
    """ISO 8601 in UTC, to the second: what spreadsheets and publishers' tools read."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


FEEDBACK_FIELDS: Sequence[str] = (
    "time",
    "verdict_id",
    "list",
    "entry_id",
    "external_id",
    "hash_type",
    "listed_hash",
    "upload_hash",
    "distance",
    "reason",
)


def feedback_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(FEEDBACK_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


def feedback_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, sort_keys=True)
