"""The decision log: one row per verdict, for the review queue and the transparency report.

Only hashes, outcomes and list versions are recorded, never the upload itself. Functions take
a connection in autocommit mode so the store can run them on its per-thread connection; each
write is a single statement, hence atomic on its own.

A record says where the decision came from (``DecisionOrigin``): an upload scanned, a hash
lookup (the sidecar's ``/v1/lookup``), or a batch job. Only uploads are flagged uploads in a
transparency report; lookups are counted apart. A review decision records what it did to the
lists (``ReviewEffect``), so changing the decision later can undo exactly that.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .._action import Action
from .._errors import ConfigError


class ReviewStatus(Enum):
    """Where a REVIEW verdict stands in the moderators' queue."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    OVERTURNED = "overturned"


class DecisionOrigin(Enum):
    """What produced a decision: an upload, a lookup of precomputed hashes, or a batch job."""

    UPLOAD = "upload"
    LOOKUP = "lookup"
    RETRO = "retro"
    BACKFILL = "backfill"


@dataclass(frozen=True, slots=True)
class ReviewEffect:
    """What a review decision wants on a list (an allowlist, or the platform's own list).

    ``entries`` are the (hash type, value) pairs the decision put there; ``owned`` those it is
    answerable for removing again: the ones that were not on the list before (a decision
    never removes an entry a sync or another decision had put there first).
    """

    list_name: str
    entries: tuple[tuple[str, str], ...]
    owned: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "list": self.list_name,
            "entries": [list(e) for e in self.entries],
            "owned": [list(e) for e in self.owned],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReviewEffect:
        return cls(
            str(data["list"]),
            tuple((str(t), str(v)) for t, v in data.get("entries") or ()),
            tuple((str(t), str(v)) for t, v in data.get("owned") or ()),
        )


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One row of the decision log.

    ``matches`` and ``errors`` are the verdict's JSON forms (``Match.to_dict()``); ``hashes``
    the upload's own hash values by type (what an allowlist needs after an overturn).
    """

    verdict_id: str
    action: Action
    time: float
    sha256: str | None = None
    matches: tuple[Mapping[str, Any], ...] = ()
    list_versions: Mapping[str, int] = field(default_factory=dict)
    errors: tuple[Mapping[str, str], ...] = ()
    hashes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    origin: DecisionOrigin = DecisionOrigin.UPLOAD
    review_status: ReviewStatus | None = None
    review_note: str | None = None
    reviewed_at: float | None = None
    review_effects: tuple[ReviewEffect, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.verdict_id, str) or not self.verdict_id:
            raise ConfigError(f"decision needs a non-empty verdict_id, got {self.verdict_id!r}")
        if not isinstance(self.action, Action):
            raise ConfigError(f"decision action must be an Action, got {self.action!r}")
        if self.review_status is not None and not isinstance(self.review_status, ReviewStatus):
            raise ConfigError(f"review_status must be a ReviewStatus, got {self.review_status!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (enums as their values, times as unix seconds)."""
        return {
            "verdict_id": self.verdict_id,
            "time": self.time,
            "sha256": self.sha256,
            "action": self.action.value,
            "origin": self.origin.value,
            "matches": [dict(m) for m in self.matches],
            "list_versions": dict(self.list_versions),
            "errors": [dict(e) for e in self.errors],
            "hashes": {k: list(v) for k, v in self.hashes.items()},
            "review_status": None if self.review_status is None else self.review_status.value,
            "review_note": self.review_note,
            "reviewed_at": self.reviewed_at,
        }


_COLUMNS = (
    "verdict_id, time, sha256, action, matches, list_versions, errors, review_status, "
    "review_note, reviewed_at, origin, hashes, review_effects"
)


def _json(value: object, verdict_id: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"decision {verdict_id!r} is not JSON-safe: {exc}") from None


def record_decision(conn: sqlite3.Connection, record: DecisionRecord) -> None:
    """Insert one decision; ``ConfigError`` if its verdict id is already recorded."""
    if not isinstance(record, DecisionRecord):
        raise ConfigError(f"a decision must be a DecisionRecord, got {type(record).__name__}")
    row = (
        record.verdict_id,
        float(record.time),
        record.sha256,
        record.action.value,
        _json([dict(m) for m in record.matches], record.verdict_id),
        _json(dict(record.list_versions), record.verdict_id),
        _json([dict(e) for e in record.errors], record.verdict_id),
        None if record.review_status is None else record.review_status.value,
        record.review_note,
        record.reviewed_at,
        record.origin.value,
        _json({k: list(v) for k, v in record.hashes.items()}, record.verdict_id),
        _json([e.to_dict() for e in record.review_effects], record.verdict_id),
    )
    try:
        conn.execute(f"INSERT INTO decisions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
    except sqlite3.IntegrityError:
        raise ConfigError(
            f"a decision with verdict_id {record.verdict_id!r} already exists"
        ) from None


def _from_row(row: Sequence[Any]) -> DecisionRecord:
    hashes = json.loads(row[11] or "{}")
    return DecisionRecord(
        verdict_id=row[0],
        time=row[1],
        sha256=row[2],
        action=Action(row[3]),
        matches=tuple(json.loads(row[4])),
        list_versions=json.loads(row[5]),
        errors=tuple(json.loads(row[6])),
        review_status=None if row[7] is None else ReviewStatus(row[7]),
        review_note=row[8],
        reviewed_at=row[9],
        origin=DecisionOrigin(row[10]),
        hashes={k: tuple(v) for k, v in hashes.items()},
        review_effects=tuple(ReviewEffect.from_dict(e) for e in json.loads(row[12] or "[]")),
    )


def decisions(
    conn: sqlite3.Connection,
    *,
    since: float | None = None,
    until: float | None = None,
    action: Action | None = None,
    review_status: ReviewStatus | None = None,
    origin: DecisionOrigin | None = None,
    limit: int | None = None,
    verdict_id: str | None = None,
) -> list[DecisionRecord]:
    """Decisions with ``since <= time < until``, oldest first."""
    where, args = ["1"], []  # type: list[str], list[Any]
    if verdict_id is not None:
        where.append("verdict_id = ?")
        args.append(verdict_id)
    if since is not None:
        where.append("time >= ?")
        args.append(float(since))
    if until is not None:
        where.append("time < ?")
        args.append(float(until))
    if action is not None:
        where.append("action = ?")
        args.append(Action.parse(action).value)
    if review_status is not None:
        where.append("review_status = ?")
        args.append(ReviewStatus(review_status).value)
    if origin is not None:
        where.append("origin = ?")
        args.append(DecisionOrigin(origin).value)
    sql = f"SELECT {_COLUMNS} FROM decisions WHERE {' AND '.join(where)} ORDER BY time, id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [_from_row(row) for row in conn.execute(sql, args)]


def set_review(
    conn: sqlite3.Connection,
    verdict_id: str,
    status: ReviewStatus,
    note: str | None,
    effects: Sequence[ReviewEffect] = (),
) -> None:
    """Record a moderator's decision and what it did to the lists (replacing an earlier one)."""
    if not isinstance(status, ReviewStatus):
        raise ConfigError(f"review status must be a ReviewStatus, got {status!r}")
    cur = conn.execute(
        "UPDATE decisions SET review_status = ?, review_note = ?, reviewed_at = ?, "
        "review_effects = ? WHERE verdict_id = ?",
        (
            status.value,
            note,
            time.time(),
            _json([e.to_dict() for e in effects], verdict_id),
            verdict_id,
        ),
    )
    if cur.rowcount == 0:
        raise ConfigError(f"no decision with verdict_id {verdict_id!r}")


def purge_decisions(conn: sqlite3.Connection, older_than: float) -> int:
    """Delete decisions with ``time < older_than``; returns how many went."""
    return conn.execute("DELETE FROM decisions WHERE time < ?", (float(older_than),)).rowcount


def wanted_by_others(
    conn: sqlite3.Connection, list_name: str, *, exclude: str
) -> dict[tuple[str, str], str]:
    """Entries of a list that review decisions other than ``exclude`` want there, each with
    the verdict id of one decision that wants it."""
    out: dict[tuple[str, str], str] = {}
    rows = conn.execute(
        "SELECT verdict_id, review_effects FROM decisions "
        "WHERE verdict_id != ? AND review_effects != '[]' ORDER BY id",
        (exclude,),
    )
    for verdict_id, text in rows:
        for effect in json.loads(text):
            if effect.get("list") == list_name:
                for hash_type, value in effect.get("entries") or ():
                    out.setdefault((str(hash_type), str(value)), str(verdict_id))
    return out


def adopt(
    conn: sqlite3.Connection, verdict_id: str, list_name: str, keys: Sequence[tuple[str, str]]
) -> None:
    """Make ``verdict_id``'s decision answerable for removing ``keys`` from ``list_name``
    (they pass to it from a decision that was changed while this one still wants them)."""
    row = conn.execute(
        "SELECT review_effects FROM decisions WHERE verdict_id = ?", (verdict_id,)
    ).fetchone()
    if row is None:
        return
    effects = [ReviewEffect.from_dict(e) for e in json.loads(row[0])]
    updated = [
        ReviewEffect(e.list_name, e.entries, tuple(dict.fromkeys([*e.owned, *keys])))
        if e.list_name == list_name
        else e
        for e in effects
    ]
    conn.execute(
        "UPDATE decisions SET review_effects = ? WHERE verdict_id = ?",
        (_json([e.to_dict() for e in updated], verdict_id), verdict_id),
    )
