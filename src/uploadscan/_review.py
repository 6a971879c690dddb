"""The moderator's side: the review queue, decisions on it, and feedback to list publishers.

A REVIEW verdict is a question to a human. The answer is recorded against the verdict's id:
``confirm`` (the match was right) or ``overturn`` (a false positive). An overturn can put the
upload's hashes on an allow list, so the same content is not flagged again, and it becomes
false-positive feedback for the list's publisher — hashes, list, entry id and reason, never the
content itself.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from ._errors import ConfigError, ListNotFoundError
from .store._lists import EntryUpsert, ListKind
from .store._store import Store

DECISIONS = {"confirm": "confirmed", "overturn": "overturned"}


def review_queue(store: Store, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Decisions still waiting for a moderator, oldest first."""
    return store.decisions(review_status="pending", limit=limit)


def find_decision(store: Store, verdict_id: str) -> dict[str, Any]:
    for record in store.decisions(verdict_id=verdict_id):
        return record
    raise ConfigError(f"no decision with verdict id {verdict_id!r}")


def record_review(
    store: Store,
    verdict_id: str,
    decision: str,
    *,
    note: str | None = None,
    allowlist: str | None = None,
) -> dict[str, Any]:
    """Record ``confirm`` or ``overturn`` for a verdict; optionally allowlist an overturn.

    Returns the updated decision record. The allow list is created (kind allow, no source) if
    it does not exist yet.
    """
    if decision not in DECISIONS:
        raise ConfigError(f"review decision must be 'confirm' or 'overturn', got {decision!r}")
    record = find_decision(store, verdict_id)
    if allowlist is not None:
        if decision != "overturn":
            raise ConfigError("only an overturned verdict can be added to an allow list")
        _allowlist(store, allowlist, record)
    store.set_review(verdict_id, DECISIONS[decision], note)
    return find_decision(store, verdict_id)


def _allowlist(store: Store, name: str, record: dict[str, Any]) -> None:
    try:
        hash_list = store.get_list(name)
    except ListNotFoundError:
        hash_list = store.add_list(name, kind=ListKind.ALLOW, source=None)
    if hash_list.kind is not ListKind.ALLOW:
        raise ConfigError(f"list {name!r} is a {hash_list.kind.value} list, not an allow list")
    upserts: list[EntryUpsert] = []
    seen: set[tuple[str, str]] = set()
    reference = f"overturned verdict {record['verdict_id']}"
    for match in record.get("matches") or []:
        query = match.get("query")
        if query and match.get("hash_type") and (match["hash_type"], query) not in seen:
            seen.add((match["hash_type"], query))
            upserts.append(EntryUpsert(match["hash_type"], query, ("overturned",), reference))
    if record.get("sha256") and ("sha256", record["sha256"]) not in seen:
        upserts.append(EntryUpsert("sha256", record["sha256"], ("overturned",), reference))
    if not upserts:
        raise ConfigError(f"verdict {record['verdict_id']} has no hashes to allowlist")
    store.apply_batch(name, upserts, mark_synced=False)


def feedback(
    store: Store, *, since: float | None = None, until: float | None = None
) -> list[dict[str, Any]]:
    """False-positive reports for list publishers: one row per overturned match."""
    rows: list[dict[str, Any]] = []
    for record in store.decisions(since=since, until=until, review_status="overturned"):
        for match in record.get("matches") or []:
            if match.get("list_kind") == ListKind.ALLOW.value:
                continue
            rows.append(
                {
                    "time": record["reviewed_at"] or record["time"],
                    "verdict_id": record["verdict_id"],
                    "list": match.get("list"),
                    "entry_id": match.get("entry_id"),
                    "external_id": match.get("external_id"),
                    "hash_type": match.get("hash_type"),
                    "listed_hash": match.get("value"),
                    "upload_hash": match.get("query"),
                    "distance": match.get("distance"),
                    "reason": record.get("review_note") or "",
                }
            )
    return rows


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
