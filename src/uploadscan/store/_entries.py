"""Versioned reads of entries: whole-type snapshots, deltas between versions, lookups by id.

Each multi-statement read runs inside one ``BEGIN`` ... ``COMMIT`` so, under WAL, it sees a
single committed state even while another process writes. Entries are live at version ``v``
when ``added_version <= v`` and (``removed_version`` is NULL or ``> v``), which makes any
retained version readable after the fact, not just the current one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import DeltaUnavailableError, StoreError
from ..hashing._registry import registry
from ._lists import Entry

__all__ = ["by_id", "changes", "of_list", "snapshot", "video_frames"]

_ENTRY_COLUMNS = "e.id, l.name, e.hash_type, e.value, e.labels, e.external_id, e.added, e.extra"
_PAGE = 1000


def snapshot(
    conn: sqlite3.Connection, path: Path, hash_type: str, version: int | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    nbytes = registry.get(hash_type).code_bytes
    return _to_arrays(_snapshot_rows(conn, path, hash_type, version), nbytes)


def snapshot_values(
    conn: sqlite3.Connection, path: Path, hash_type: str, version: int | None
) -> tuple[npt.NDArray[np.int64], list[bytes]]:
    """Like ``snapshot`` for types whose stored values vary in size (vector types)."""
    rows = _snapshot_rows(conn, path, hash_type, version)
    return _ids(rows), [bytes(r[1]) for r in rows]


def _snapshot_rows(
    conn: sqlite3.Connection, path: Path, hash_type: str, version: int | None
) -> list[tuple[int, bytes]]:
    conn.execute("BEGIN")
    try:
        if version is None:
            version = _meta_int(conn, "version")
        else:
            _check_retained(conn, path, version)
        rows = conn.execute(
            # A scan in rowid order beats an index walk plus a sort for whole-type reads.
            "SELECT id, value FROM entries NOT INDEXED WHERE hash_type = ? "
            "AND added_version <= ? AND (removed_version IS NULL OR removed_version > ?)",
            (hash_type, version, version),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    return rows


def changes(
    conn: sqlite3.Connection, path: Path, hash_type: str, since: int, upto: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    nbytes = registry.get(hash_type).code_bytes
    added, removed = _change_rows(conn, path, hash_type, since, upto)
    ids, codes = _to_arrays(added, nbytes)
    return ids, codes, removed


def changes_values(
    conn: sqlite3.Connection, path: Path, hash_type: str, since: int, upto: int
) -> tuple[npt.NDArray[np.int64], list[bytes], npt.NDArray[np.int64]]:
    """Like ``changes`` for types whose stored values vary in size (vector types)."""
    added, removed = _change_rows(conn, path, hash_type, since, upto)
    return _ids(added), [bytes(r[1]) for r in added], removed


def _change_rows(
    conn: sqlite3.Connection, path: Path, hash_type: str, since: int, upto: int
) -> tuple[list[tuple[int, bytes]], npt.NDArray[np.int64]]:
    conn.execute("BEGIN")
    try:
        _check_retained(conn, path, since)
        added = conn.execute(
            "SELECT id, value FROM entries WHERE hash_type = ? AND added_version > ? "
            "AND added_version <= ? AND (removed_version IS NULL OR removed_version > ?) "
            "ORDER BY id",
            (hash_type, since, upto, upto),
        ).fetchall()
        removed = conn.execute(
            "SELECT id FROM entries WHERE hash_type = ? AND removed_version > ? "
            "AND removed_version <= ? AND added_version <= ? ORDER BY id",
            (hash_type, since, upto, since),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    return added, np.array([r[0] for r in removed], dtype=np.int64)


def by_id(
    conn: sqlite3.Connection, ids: Iterable[int], at_version: int | None = None
) -> dict[int, Entry]:
    wanted = sorted({int(i) for i in ids})
    out: dict[int, Entry] = {}
    if at_version is None:
        live, extra_args = "e.removed_version IS NULL", []
    else:
        live = "e.added_version <= ? AND (e.removed_version IS NULL OR e.removed_version > ?)"
        extra_args = [at_version, at_version]
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries e JOIN lists l ON l.id = e.list_id "
            f"WHERE e.id IN ({marks}) AND {live}",
            [*chunk, *extra_args],
        ):
            entry = _entry(row)
            out[entry.id] = entry
    return out


def of_list(
    conn: Callable[[], sqlite3.Connection],
    list_id: int,
    hash_type: str | None,
    limit: int | None,
) -> Iterator[Entry]:
    """Page by id so no cursor stays open between pages (the caller may write meanwhile);
    ``conn`` is called per page because a generator may be resumed on another thread."""
    type_clause = " AND e.hash_type = ?" if hash_type is not None else ""
    last, remaining = 0, -1 if limit is None else limit
    while remaining != 0:
        page = _PAGE if remaining < 0 else min(_PAGE, remaining)
        args: list[Any] = [list_id, last]
        if hash_type is not None:
            args.append(hash_type)
        rows = (
            conn()
            .execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries e JOIN lists l ON l.id = e.list_id "
                f"WHERE e.list_id = ? AND e.removed_version IS NULL AND e.id > ?"
                f"{type_clause} ORDER BY e.id LIMIT {page}",
                args,
            )
            .fetchall()
        )
        if not rows:
            return
        for row in rows:
            yield _entry(row)
        last = rows[-1][0]
        if remaining > 0:
            remaining -= len(rows)


def video_frames(conn: sqlite3.Connection, list_id: int, video: str) -> list[Entry]:
    rows = conn.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM entries e JOIN lists l ON l.id = e.list_id "
        "WHERE e.list_id = ? AND e.extra IS NOT NULL AND json_extract(e.extra, '$.video') = ? "
        "AND e.removed_version IS NULL "
        "ORDER BY json_extract(e.extra, '$.timestamp'), e.id",
        (list_id, video),
    ).fetchall()
    return [_entry(row) for row in rows]


def _meta_int(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise StoreError(f"store metadata {key!r} is missing")
    return int(row[0])


def _check_retained(conn: sqlite3.Connection, path: Path, since: int) -> None:
    horizon = _meta_int(conn, "compacted_before")
    if since < horizon - 1:
        raise DeltaUnavailableError(
            f"store {path}: changes since version {since} were compacted "
            f"(history kept from version {horizon - 1})"
        )


def _ids(rows: list[tuple[int, bytes]]) -> npt.NDArray[np.int64]:
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def _to_arrays(
    rows: list[tuple[int, bytes]], nbytes: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    codes = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(-1, nbytes)
    return _ids(rows), codes


def _entry(row: tuple[Any, ...]) -> Entry:
    entry_id, list_name, hash_type, value, labels, external_id, added, extra = row
    return Entry(
        id=entry_id,
        list_name=list_name,
        hash_type=hash_type,
        value=registry.get(hash_type).from_bytes(value),
        labels=tuple(json.loads(labels)),
        external_id=external_id,
        added=added,
        extra=None if extra is None else json.loads(extra),
    )


def live_keys(
    conn: sqlite3.Connection, list_id: int, keys: Iterable[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which (hash type, canonical value) pairs are live entries of the list."""
    out = set()
    for hash_type, value in keys:
        code = registry.get(hash_type).to_bytes(value)
        row = conn.execute(
            "SELECT 1 FROM entries WHERE list_id = ? AND hash_type = ? AND value = ? "
            "AND removed_version IS NULL",
            (list_id, hash_type, code),
        ).fetchone()
        if row is not None:
            out.add((hash_type, value))
    return out
