"""The store's SQLite schema and the migrations that reach it.

``PRAGMA user_version`` holds the number of migrations applied. Migrations only ever append:
an installed store at version N runs migrations N+1.. on open, inside one ``BEGIN IMMEDIATE``
so two processes opening a fresh data directory at once cannot both apply them.

Why the tables look like this:

- ``meta`` holds the single store version, bumped once per committed change. Readers (the
  matcher) compare it with the version their index was built at, so "did anything change?" is
  one indexed read.
- ``entries`` keeps removed rows as tombstones (``removed_version`` set) until ``compact``,
  so a reader can ask for exactly what changed between two versions instead of reloading a
  million rows. Live rows are unique per (list, type, value) via a partial index; ids come from
  AUTOINCREMENT so an id is never reused for a different entry while some index file may still
  carry the old one.
- ``lists`` rows are soft-deleted the same way, so a removed list's entries can still be
  reported as removed; a new list may reuse the name.
- ``list_counts`` keeps live counts per list and type, so listing lists never scans entries.
- ``decisions`` is the audit log: one row per verdict, hashes and outcomes only, never content;
  ``origin`` tells uploads from hash lookups and batch jobs, ``review_effects`` what a review
  decision added to which list.
"""

from __future__ import annotations

import sqlite3

from .._errors import StoreVersionError

MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE lists (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('block', 'review', 'allow')),
        source TEXT,
        settings TEXT NOT NULL,
        checkpoint TEXT,
        version INTEGER NOT NULL,
        last_sync REAL,
        created REAL NOT NULL,
        removed_version INTEGER
    );
    CREATE UNIQUE INDEX lists_live_name ON lists (name) WHERE removed_version IS NULL;

    CREATE TABLE entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        list_id INTEGER NOT NULL REFERENCES lists (id),
        hash_type TEXT NOT NULL,
        value BLOB NOT NULL,
        labels TEXT NOT NULL DEFAULT '[]',
        external_id TEXT,
        extra TEXT,
        added REAL NOT NULL,
        added_version INTEGER NOT NULL,
        removed_version INTEGER
    );
    CREATE UNIQUE INDEX entries_live_key ON entries (list_id, hash_type, value)
        WHERE removed_version IS NULL;
    CREATE INDEX entries_type_value ON entries (hash_type, value);
    CREATE INDEX entries_added ON entries (hash_type, added_version);
    CREATE INDEX entries_removed ON entries (hash_type, removed_version)
        WHERE removed_version IS NOT NULL;
    CREATE INDEX entries_video ON entries (list_id, json_extract(extra, '$.video'))
        WHERE extra IS NOT NULL;

    CREATE TABLE list_counts (
        list_id INTEGER NOT NULL REFERENCES lists (id),
        hash_type TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (list_id, hash_type)
    ) WITHOUT ROWID;

    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        verdict_id TEXT NOT NULL UNIQUE,
        time REAL NOT NULL,
        sha256 TEXT,
        action TEXT NOT NULL,
        matches TEXT NOT NULL DEFAULT '[]',
        list_versions TEXT NOT NULL DEFAULT '{}',
        errors TEXT NOT NULL DEFAULT '[]',
        review_status TEXT
            CHECK (review_status IN ('pending', 'confirmed', 'overturned')),
        review_note TEXT,
        reviewed_at REAL
    );
    CREATE INDEX decisions_time ON decisions (time);
    CREATE INDEX decisions_review ON decisions (review_status, time)
        WHERE review_status IS NOT NULL;
    """,
    # 2: where a decision came from (an upload, a hash lookup, a batch job), the upload's own
    # hashes (what an allowlist or an own list needs after review), and what a review
    # decision did to the lists (so a changed decision can undo it)
    """
    ALTER TABLE decisions ADD COLUMN origin TEXT NOT NULL DEFAULT 'upload'
        CHECK (origin IN ('upload', 'lookup', 'retro', 'backfill'));
    ALTER TABLE decisions ADD COLUMN hashes TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE decisions ADD COLUMN review_effects TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX decisions_origin ON decisions (origin, time);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, store_id: str) -> None:
    """Bring the schema up to ``SCHEMA_VERSION``. ``conn`` must be in autocommit mode.

    ``store_id`` is written once, on creation: index files record it so an index built for a
    different (deleted and recreated) store is never trusted.
    """
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise StoreVersionError(
                f"the store has schema version {current}, newer than this uploadscan supports "
                f"({SCHEMA_VERSION}); upgrade uploadscan",
                found=current,
            )
        for number in range(current, SCHEMA_VERSION):
            for statement in _split(MIGRATIONS[number]):
                conn.execute(statement)
        if current == 0:
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("version", "0"), ("store_id", store_id), ("compacted_before", "0")],
            )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _split(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on ';' instead (no ';' in literals).
    return [s.strip() for s in script.split(";") if s.strip()]
