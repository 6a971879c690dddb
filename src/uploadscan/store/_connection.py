"""One way to open SQLite connections: per thread, WAL, a long busy timeout, closed together.

Every SQLite file uploadscan keeps (the store, the published-content record) is used from
many threads and processes at once. sqlite3 connections must not be shared mid-statement, so
each thread gets its own, created on first use with the same pragmas: WAL (readers never wait
for the writer), ``synchronous=NORMAL`` (consistent after power loss, possibly missing the
last commit, which sync repeats from its checkpoint), and a 30 s busy timeout so a writer
waits for another process's transaction instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from .._errors import StoreCorruptError, StoreError

BUSY_TIMEOUT_MS = 30_000


class ConnectionPool:
    """Per-thread connections to one SQLite file. ``read_only`` opens with ``mode=ro`` and
    never creates, migrates or writes (batch workers on a shared data directory)."""

    def __init__(self, path: Path, *, read_only: bool = False, what: str = "store") -> None:
        self._path = path
        self._read_only = read_only
        self._what = what
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    def get(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit)."""
        if self._closed:
            raise StoreError(f"{self._what} {self._path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            if self._read_only:
                conn = sqlite3.connect(
                    f"{self._path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    self._path,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,  # only ever used by its own thread; close() excepted
                )
        except (sqlite3.OperationalError, OSError) as exc:
            raise StoreError(f"cannot open {self._what} {self._path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not self._read_only:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: large batches stay in memory
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreCorruptError(
                f"{self._what} {self._path} is not a usable uploadscan database: {exc}"
            ) from None
        with self._lock:
            self._conns.append(conn)
        self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close every thread's connection. Later ``get`` calls raise ``StoreError``."""
        self._closed = True
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
