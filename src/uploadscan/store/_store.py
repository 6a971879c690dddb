"""The SQLite store: hash lists, their entries, and the decision log. The source of truth.

Every index file is derived from this store and can be rebuilt from it, so the store's job is
to be correct under concurrency and crashes, and to let readers find out cheaply what changed:

- One store version (``meta.version``) is bumped exactly once per committed change. Entries
  record the version that added them and, as tombstones, the version that removed them, so
  ``snapshot(type, v)`` and ``changes(type, a, b)`` are exact at any version still retained.
- A batch is all-or-nothing: every value is validated by its hash type before the write
  transaction starts, staged in a per-connection TEMP table, then applied with a handful of
  set-based statements inside one ``BEGIN IMMEDIATE``. A writer killed mid-batch leaves only
  uncommitted WAL frames, which SQLite discards on the next open.
- WAL lets many processes read while one writes; ``synchronous=NORMAL`` keeps the file
  consistent on power loss at the cost of possibly losing the last commit, which sync repeats
  from the stored checkpoint anyway.
- Each thread gets its own connection (sqlite3 connections must not be shared mid-statement).
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .._action import Action
from .._errors import (
    ConfigError,
    ListNotFoundError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
)
from . import _apply as _batch
from . import _apply_packed as _batch_packed
from . import _audit, _entries
from ._apply import WriteTxn
from ._audit import DecisionOrigin, DecisionRecord, ReviewEffect, ReviewStatus
from ._connection import ConnectionPool
from ._lists import BatchResult, Entry, EntryUpsert, HashList, ListKind, ListSettings
from ._packed import PackedUpserts
from ._schema import migrate

__all__ = ["Store"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# quick_check reads every page; worth it on open only while that stays well under 100 ms.
_QUICK_CHECK_MAX_BYTES = 16 << 20


_LIST_COLUMNS = "id, name, kind, source, settings, checkpoint, version, last_sync, created"


class Store:
    """A hash-list store in one SQLite file. Use ``Store.open(path)``; thread-safe."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool = ConnectionPool(path)
        self._store_id = ""

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def open(cls, path: Path | str) -> Store:
        """Open or create the store at ``path`` (parent directories too), migrating it.

        Raises ``StoreCorruptError`` if the file is not an intact SQLite database.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory for store {path}: {exc}") from None
        _check_header(path)
        store = cls(path)
        try:
            conn = store._conn()
            migrate(conn, uuid.uuid4().hex)
            if path.stat().st_size <= _QUICK_CHECK_MAX_BYTES:
                result = conn.execute("PRAGMA quick_check").fetchall()
                if result != [("ok",)]:
                    detail = "; ".join(str(r[0]) for r in result[:3])
                    raise StoreCorruptError(f"store {path} is damaged: {detail}")
            store._store_id = store._meta(conn, "store_id")
        except StoreVersionError as exc:
            store.close()
            raise StoreVersionError(f"store {path}: {exc}", found=exc.found) from None
        except sqlite3.DatabaseError as exc:
            store.close()
            raise StoreCorruptError(
                f"store {path} is not a usable uploadscan database: {exc}"
            ) from None
        except BaseException:
            store.close()
            raise
        return store

    @property
    def path(self) -> Path:
        return self._path

    @property
    def store_id(self) -> str:
        """Random id fixed at creation; tells index files of a recreated store apart."""
        return self._store_id

    def close(self) -> None:
        """Close every thread's connection. Later calls raise ``StoreError``."""
        self._pool.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        return self._pool.get()

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StoreCorruptError(f"store metadata {key!r} is missing")
        return str(row[0])

    def _write(self) -> WriteTxn:
        return WriteTxn(self._conn(), self._path)

    # ---------------------------------------------------------------- lists

    def add_list(
        self,
        name: str,
        *,
        kind: ListKind,
        source: str | None = None,
        settings: ListSettings | None = None,
    ) -> HashList:
        """Create an empty list. ``ConfigError`` for a bad or duplicate name."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                f"list name must be 1-64 characters of letters, digits, '.', '_' or '-' "
                f"starting with a letter or digit, got {name!r}"
            )
        if not isinstance(kind, ListKind):
            raise ConfigError(f"kind must be a ListKind, got {kind!r}")
        settings = settings or ListSettings()
        with self._write() as txn:
            if txn.find_list(name) is not None:
                raise ConfigError(f"a list named {name!r} already exists")
            version = txn.bump()
            txn.conn.execute(
                "INSERT INTO lists (name, kind, source, settings, version, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, kind.value, source, settings.to_json(), version, time.time()),
            )
        return self.get_list(name)

    def remove_list(self, name: str) -> None:
        """Remove a list and (as tombstones, until ``compact``) all its entries."""
        with self._write() as txn:
            list_id = txn.require_list(name)
            version = txn.bump()
            c = txn.conn
            c.execute(
                "UPDATE entries SET removed_version = ? WHERE list_id = ? "
                "AND removed_version IS NULL",
                (version, list_id),
            )
            c.execute("DELETE FROM list_counts WHERE list_id = ?", (list_id,))
            c.execute(
                "UPDATE lists SET removed_version = ?, version = ? WHERE id = ?",
                (version, version, list_id),
            )

    def get_list(self, name: str) -> HashList:
        lists = self._read_lists(name)
        if not lists:
            raise ListNotFoundError(f"no hash list named {name!r}")
        return lists[0]

    def lists(self) -> list[HashList]:
        """All live lists, by name."""
        return self._read_lists(None)

    def update_settings(self, name: str, settings: ListSettings) -> HashList:
        if not isinstance(settings, ListSettings):
            raise ConfigError(f"settings must be a ListSettings, got {settings!r}")
        return self._set_list_field(name, "settings", settings.to_json())

    def set_source(self, name: str, source: str | None) -> HashList:
        return self._set_list_field(name, "source", source)

    def _set_list_field(self, name: str, column: str, value: str | None) -> HashList:
        with self._write() as txn:
            list_id = txn.require_list(name)
            version = txn.bump()
            txn.conn.execute(
                f"UPDATE lists SET {column} = ?, version = ? WHERE id = ?",
                (value, version, list_id),
            )
        return self.get_list(name)

    def _read_lists(self, name: str | None) -> list[HashList]:
        conn = self._conn()
        where = "removed_version IS NULL" + (" AND name = ?" if name is not None else "")
        args = (name,) if name is not None else ()
        conn.execute("BEGIN")
        try:
            rows = conn.execute(
                f"SELECT {_LIST_COLUMNS} FROM lists WHERE {where} ORDER BY name", args
            ).fetchall()
            counts: dict[int, dict[str, int]] = {}
            for list_id, hash_type, count in conn.execute(
                "SELECT list_id, hash_type, count FROM list_counts WHERE count > 0"
            ):
                counts.setdefault(list_id, {})[hash_type] = count
        finally:
            conn.execute("COMMIT")
        out = []
        for list_id, lname, kind, source, settings, checkpoint, version, last_sync, created in rows:
            by_type = dict(sorted(counts.get(list_id, {}).items()))
            out.append(
                HashList(
                    name=lname,
                    kind=ListKind(kind),
                    source=source,
                    settings=ListSettings.from_json(settings),
                    checkpoint=checkpoint,
                    version=version,
                    last_sync=last_sync,
                    created=created,
                    entry_count=sum(by_type.values()),
                    counts_by_type=by_type,
                )
            )
        return out

    # ---------------------------------------------------------------- writes

    def apply_batch(
        self,
        list_name: str,
        upserts: Iterable[EntryUpsert],
        deletes: Iterable[tuple[str, str]] = (),
        *,
        checkpoint: str | None = None,
        replace: bool = False,
        mark_synced: bool = True,
    ) -> BatchResult:
        """Apply one sync batch to ``list_name`` atomically.

        Every value is validated (``InvalidHashError`` naming the entry, nothing applied)
        before the write transaction starts. Within a batch the last upsert of a value wins
        and a delete beats an upsert of the same value. ``replace=True`` removes every entry
        of the list not among ``upserts``. ``checkpoint`` (if given) and ``last_sync`` (if
        ``mark_synced``) are stored in the same transaction, so a sync that resumes from the
        stored checkpoint never skips or repeats a batch.
        """
        if isinstance(upserts, PackedUpserts):  # a list file's bulk path (see _packed)
            return _batch_packed.apply_packed(
                self._conn(),
                self._path,
                list_name,
                upserts,
                deletes,
                checkpoint=checkpoint,
                replace=replace,
                mark_synced=mark_synced,
            )
        return _batch.apply_batch(
            self._conn(),
            self._path,
            list_name,
            upserts,
            deletes,
            checkpoint=checkpoint,
            replace=replace,
            mark_synced=mark_synced,
        )

    def compact(self, before_version: int) -> int:
        """Purge tombstones removed before ``before_version``; returns how many went.

        Afterwards ``changes(since, ...)`` needs ``since >= before_version - 1``.
        """
        with self._write() as txn:
            c = txn.conn
            n = c.execute(
                "DELETE FROM entries WHERE removed_version IS NOT NULL AND removed_version < ?",
                (before_version,),
            ).rowcount
            c.execute(
                "DELETE FROM lists WHERE removed_version IS NOT NULL AND removed_version < ? "
                "AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.list_id = lists.id)",
                (before_version,),
            )
            c.execute(
                "UPDATE meta SET value = max(CAST(value AS INTEGER), ?) "
                "WHERE key = 'compacted_before'",
                (before_version,),
            )
        return int(n)

    # ---------------------------------------------------------------- reads

    def version(self) -> int:
        """The current store version (cheap: one indexed read)."""
        return int(self._meta(self._conn(), "version"))

    def count(self, hash_type: str) -> int:
        """Live entries of ``hash_type`` across all lists (cheap: kept counts)."""
        row = (
            self._conn()
            .execute(
                "SELECT coalesce(sum(count), 0) FROM list_counts WHERE hash_type = ?", (hash_type,)
            )
            .fetchone()
        )
        return int(row[0])

    def hash_types(self) -> list[str]:
        """Hash types with at least one live entry in any list."""
        rows = self._conn().execute(
            "SELECT DISTINCT hash_type FROM list_counts WHERE count > 0 ORDER BY hash_type"
        )
        return [r[0] for r in rows]

    def snapshot(
        self, hash_type: str, version: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """Ids and codes (n, nbytes) of every entry of ``hash_type`` live at ``version``
        (default: now) across all lists, in id order."""
        return _entries.snapshot(self._conn(), self._path, hash_type, version)

    def changes(
        self, hash_type: str, since_version: int, upto_version: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """What happened to ``hash_type`` between two versions: (added ids, added codes,
        removed ids). Entries both added and removed in the range appear in neither.
        ``DeltaUnavailableError`` if ``compact`` purged tombstones the range needs."""
        return _entries.changes(self._conn(), self._path, hash_type, since_version, upto_version)

    def snapshot_values(
        self, hash_type: str, version: int | None = None
    ) -> tuple[npt.NDArray[np.int64], list[bytes]]:
        """``snapshot`` for types whose values vary in size: ids and the stored bytes."""
        return _entries.snapshot_values(self._conn(), self._path, hash_type, version)

    def changes_values(
        self, hash_type: str, since_version: int, upto_version: int
    ) -> tuple[npt.NDArray[np.int64], list[bytes], npt.NDArray[np.int64]]:
        """``changes`` for types whose values vary in size."""
        return _entries.changes_values(
            self._conn(), self._path, hash_type, since_version, upto_version
        )

    def entries(self, ids: Iterable[int], at_version: int | None = None) -> dict[int, Entry]:
        """Entries by id, live now or (``at_version``) live at that store version; ids of
        removed or unknown entries are simply absent."""
        return _entries.by_id(self._conn(), ids, at_version)

    def list_entries(
        self, name: str, hash_type: str | None = None, limit: int | None = None
    ) -> Iterator[Entry]:
        """Live entries of one list in id order, read page by page (no long-held cursor)."""
        list_id = self._list_id(name)
        return _entries.of_list(self._conn, list_id, hash_type, limit)

    def live_keys(self, list_name: str, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (hash type, canonical value) pairs are live entries of ``list_name``."""
        return _entries.live_keys(self._conn(), self._list_id(list_name), keys)

    def wanted_by_other_reviews(
        self, verdict_id: str, list_name: str
    ) -> dict[tuple[str, str], str]:
        """Entries of ``list_name`` that review decisions other than ``verdict_id`` put there,
        each with one such decision's verdict id."""
        return _audit.wanted_by_others(self._conn(), list_name, exclude=verdict_id)

    def adopt_review_entries(
        self, verdict_id: str, list_name: str, keys: Sequence[tuple[str, str]]
    ) -> None:
        """Pass the removal of ``keys`` from ``list_name`` to ``verdict_id``'s decision."""
        _audit.adopt(self._conn(), verdict_id, list_name, keys)

    def video_frames(self, list_name: str, video: str) -> list[Entry]:
        """Live entries of ``list_name`` whose ``extra["video"]`` is ``video`` (the listed
        frames of one video), by ``extra["timestamp"]`` then id."""
        return _entries.video_frames(self._conn(), self._list_id(list_name), video)

    def _list_id(self, name: str) -> int:
        row = (
            self._conn()
            .execute("SELECT id FROM lists WHERE name = ? AND removed_version IS NULL", (name,))
            .fetchone()
        )
        if row is None:
            raise ListNotFoundError(f"no hash list named {name!r}")
        return int(row[0])

    def check(self) -> list[str]:
        """Full integrity check (reads the whole file); empty list when healthy."""
        rows = self._conn().execute("PRAGMA integrity_check").fetchall()
        return [] if rows == [("ok",)] else [str(r[0]) for r in rows]

    # ---------------------------------------------------------------- decisions

    def record_decision(self, record: DecisionRecord) -> None:
        _audit.record_decision(self._conn(), record)

    def decisions(
        self,
        since: float | None = None,
        until: float | None = None,
        action: Action | None = None,
        review_status: ReviewStatus | None = None,
        limit: int | None = None,
        verdict_id: str | None = None,
        origin: DecisionOrigin | None = None,
    ) -> list[DecisionRecord]:
        return _audit.decisions(
            self._conn(),
            since=since,
            until=until,
            action=action,
            review_status=review_status,
            origin=origin,
            limit=limit,
            verdict_id=verdict_id,
        )

    def decision(self, verdict_id: str) -> DecisionRecord:
        """The decision recorded for ``verdict_id`` (``ConfigError`` if there is none)."""
        found = self.decisions(verdict_id=verdict_id)
        if not found:
            raise ConfigError(f"no decision with verdict id {verdict_id!r}")
        return found[0]

    def set_review(
        self,
        verdict_id: str,
        status: ReviewStatus,
        note: str | None = None,
        effects: Sequence[ReviewEffect] = (),
    ) -> None:
        _audit.set_review(self._conn(), verdict_id, status, note, effects)

    def purge_decisions(self, older_than: float) -> int:
        return _audit.purge_decisions(self._conn(), older_than)


def _check_header(path: Path) -> None:
    """Refuse a directory where the store file should be.

    The file itself is never opened outside SQLite: on POSIX, closing *any* descriptor of a
    file drops every fcntl lock this process holds on it, including those of live SQLite
    connections, and another process could then delete the WAL under them. A file that is not
    a database is reported by SQLite's first read (``StoreCorruptError`` in ``open``).
    """
    if path.is_dir():
        raise StoreError(f"store path {path} is a directory")
