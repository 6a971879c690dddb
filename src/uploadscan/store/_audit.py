"""The decision log: one row per verdict, for the review queue and the transparency report.

Only hashes, outcomes and list versions are recorded, never the upload itself. Functions take
a connection in autocommit mode so the store can run them on its per-thread connection; each
write is a single statement, hence atomic on its own.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigError

REVIEW_STATUSES = ("pending", "confirmed", "overturned")
_ACTIONS = ("allow", "review", "block")
_KEYS = frozenset(
    {
        "verdict_id",
        "time",
        "sha256",
        "action",
        "matches",
        "list_versions",
        "errors",
        "review_status",
        "review_note",
    }
)
_COLUMNS = (
    "verdict_id, time, sha256, action, matches, list_versions, errors, review_status, "
    "review_note, reviewed_at"
)


def record_decision(conn: sqlite3.Connection, record: Mapping[str, Any]) -> None:
    """Insert one decision. Required keys: ``verdict_id`` (str) and ``action``
    (allow/review/block); optional: ``time`` (default now), ``sha256``, ``matches`` (list),
    ``list_versions`` (dict), ``errors`` (list), ``review_status``, ``review_note``.
    Unknown keys are refused so nothing unplanned (such as content) ends up in the log."""
    unknown = sorted(set(record) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown decision field(s): {', '.join(unknown)}")
    verdict_id = record.get("verdict_id")
    if not isinstance(verdict_id, str) or not verdict_id:
        raise ConfigError(f"decision needs a non-empty verdict_id, got {verdict_id!r}")
    action = record.get("action")
    if action not in _ACTIONS:
        raise ConfigError(f"decision action must be one of {_ACTIONS}, got {action!r}")
    status = record.get("review_status")
    if status is not None and status not in REVIEW_STATUSES:
        raise ConfigError(f"review_status must be one of {REVIEW_STATUSES}, got {status!r}")
    when = record.get("time")
    if when is None:
        when = time.time()
    try:
        row = (
            verdict_id,
            float(when),
            record.get("sha256"),
            action,
            json.dumps(record.get("matches") or [], sort_keys=True),
            json.dumps(record.get("list_versions") or {}, sort_keys=True),
            json.dumps(record.get("errors") or [], sort_keys=True),
            status,
            record.get("review_note"),
            None,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"decision {verdict_id!r} is not JSON-safe: {exc}") from None
    try:
        conn.execute(f"INSERT INTO decisions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", row)
    except sqlite3.IntegrityError:
        raise ConfigError(f"a decision with verdict_id {verdict_id!r} already exists") from None


def decisions(
    conn: sqlite3.Connection,
    *,
    since: float | None = None,
    until: float | None = None,
    action: str | None = None,
    review_status: str | None = None,
    limit: int | None = None,
    verdict_id: str | None = None,
) -> list[dict[str, Any]]:
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
        args.append(action)
    if review_status is not None:
        where.append("review_status = ?")
        args.append(review_status)
    sql = f"SELECT {_COLUMNS} FROM decisions WHERE {' AND '.join(where)} ORDER BY time, id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    out = []
    for row in conn.execute(sql, args):
        out.append(
            {
                "verdict_id": row[0],
                "time": row[1],
                "sha256": row[2],
                "action": row[3],
                "matches": json.loads(row[4]),
                "list_versions": json.loads(row[5]),
                "errors": json.loads(row[6]),
                "review_status": row[7],
                "review_note": row[8],
                "reviewed_at": row[9],
            }
        )
    return out


def set_review(conn: sqlite3.Connection, verdict_id: str, status: str, note: str | None) -> None:
    if status not in REVIEW_STATUSES:
        raise ConfigError(f"review status must be one of {REVIEW_STATUSES}, got {status!r}")
    cur = conn.execute(
        "UPDATE decisions SET review_status = ?, review_note = ?, reviewed_at = ? "
        "WHERE verdict_id = ?",
        (status, note, time.time(), verdict_id),
    )
    if cur.rowcount == 0:
        raise ConfigError(f"no decision with verdict_id {verdict_id!r}")


def purge_decisions(conn: sqlite3.Connection, older_than: float) -> int:
    """Delete decisions with ``time < older_than``; returns how many went."""
    return conn.execute("DELETE FROM decisions WHERE time < ?", (float(older_than),)).rowcount
