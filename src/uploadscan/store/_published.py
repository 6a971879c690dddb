"""The published-content record: which content id was published with which hashes.

A hash list that arrives today names content a platform may have published last year. To find
it without keeping (or re-reading) the content, a platform can opt in to recording, at upload
time, the hashes ``scan`` computed anyway: ``scanner.scan(data, content_id="post/123")``. The
record holds the content id, the time, the media type, MD5, SHA-256 and every PDQ query of the
scan — the image's hash and its dihedral and border-trimmed variants (they cannot be derived
from the hash later: a variant is computed from the DCT, not from the 256 bits), or each video
frame's hashes with timestamp and quality. Nothing else: never the content, never who posted it.

It lives in its own SQLite file (``published.sqlite3`` beside the store), so recording never
contends with list syncs for the store's write lock and the record can be copied, exported or
deleted on its own. Large platforms export it to Parquet shards (``_parquet``) for batch jobs.

Workers of a batch job read it in shards of content rows (``shard_ranges`` / ``read_shard``)
as columnar arrays (``RecordShard``), which is what the retroactive matcher streams.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from .._errors import ConfigError, StoreCorruptError, StoreError
from ..hashing._result import FrameHash, Query
from ._connection import ConnectionPool

if TYPE_CHECKING:
    from ..hashing._hash_file import UploadHashes

__all__ = [
    "PUBLISHED_FILENAME",
    "MemorySink",
    "PublishedItem",
    "PublishedRecord",
    "RecordShard",
    "RecordedPdq",
]

PUBLISHED_FILENAME = "published.sqlite3"
IMAGE_FRAME = -1
"""``frame`` of a still image's PDQ rows (video frames count from 0)."""

_MAX_CONTENT_ID = 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS published (
    id INTEGER PRIMARY KEY,
    content_id TEXT NOT NULL UNIQUE,
    time REAL NOT NULL,
    media_type TEXT,
    md5 BLOB,
    sha256 BLOB,
    pdq BLOB,
    quality INTEGER
);
CREATE INDEX IF NOT EXISTS published_md5 ON published (md5);
CREATE INDEX IF NOT EXISTS published_sha256 ON published (sha256);
CREATE TABLE IF NOT EXISTS published_pdq (
    content INTEGER NOT NULL REFERENCES published (id) ON DELETE CASCADE,
    frame INTEGER NOT NULL,
    variant INTEGER NOT NULL,
    timestamp REAL,
    quality INTEGER,
    code BLOB NOT NULL,
    PRIMARY KEY (content, frame, variant)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS published_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class RecordedPdq:
    """One PDQ query of a recorded scan: ``frame`` is ``IMAGE_FRAME`` for a still image,
    ``variant`` 0 the hash as computed and 1-15 its dihedral / trimmed forms."""

    frame: int
    variant: int
    timestamp: float | None
    quality: int | None
    pdq: str


@dataclass(frozen=True, slots=True)
class PublishedItem:
    """Everything recorded about one published content id."""

    content_id: str
    time: float
    media_type: str | None
    md5: str | None
    sha256: str | None
    pdq: tuple[RecordedPdq, ...] = ()

    @classmethod
    def from_scan(cls, content_id: str, hashed: UploadHashes, time: float) -> PublishedItem:
        """The record of one scan: its digests and every PDQ query it made."""
        check_content_id(content_id)
        result = hashed.result
        rows = tuple(
            RecordedPdq(
                IMAGE_FRAME if q.frame is None else q.frame,
                q.variant,
                q.timestamp,
                q.quality,
                q.value,
            )
            for q in hashed.queries
            if q.hash_type == "pdq"
        )
        return cls(
            content_id,
            time,
            result.media_type,
            result.digest("md5"),
            result.digest("sha256"),
            rows,
        )

    @property
    def pdq_hash(self) -> tuple[str | None, int | None]:
        """The image's own PDQ (variant 0) and quality; ``(None, None)`` for a video."""
        for row in self.pdq:
            if row.frame == IMAGE_FRAME and row.variant == 0:
                return row.pdq, row.quality
        return None, None

    def queries(self) -> list[Query]:
        """The queries ``scan`` made for this content (PDQ and digests), in scan order."""
        out = []
        if self.md5 is not None:
            out.append(Query("md5", self.md5))
        if self.sha256 is not None:
            out.append(Query("sha256", self.sha256))
        for row in sorted(self.pdq, key=lambda r: (r.frame, r.variant)):
            frame = None if row.frame == IMAGE_FRAME else row.frame
            out.append(Query("pdq", row.pdq, row.variant, row.quality, frame, row.timestamp))
        return out

    def frames(self) -> tuple[FrameHash, ...]:
        """A video's frames (variant 0 of each), as ``scan`` passed them to the video rule."""
        rows = sorted((r for r in self.pdq if r.frame >= 0 and r.variant == 0), key=_frame_key)
        return tuple(
            FrameHash(r.timestamp or 0.0, r.pdq, 100 if r.quality is None else r.quality)
            for r in rows
        )


def _frame_key(row: RecordedPdq) -> int:
    return row.frame


def check_content_id(content_id: object) -> str:
    if not isinstance(content_id, str) or not content_id or len(content_id) > _MAX_CONTENT_ID:
        raise ConfigError(
            f"content_id must be a non-empty string of at most {_MAX_CONTENT_ID} characters, "
            f"got {content_id!r}"
        )
    return content_id


class PublishedSink(Protocol):
    """Where ``Scanner.scan(..., content_id=...)`` sends the record of a scan: the data
    directory's ``PublishedRecord`` by default, a ``MemorySink`` in batch workers (which hand
    records to a single writer)."""

    def add(self, item: PublishedItem) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """Collects records in memory: batch workers hand them to the single writer instead."""

    def __init__(self) -> None:
        self.items: list[PublishedItem] = []

    def add(self, item: PublishedItem) -> None:
        self.items.append(item)

    def close(self) -> None:
        """Nothing to release: the items stay until ``take``."""

    def take(self) -> list[PublishedItem]:
        items, self.items = self.items, []
        return items


@dataclass(frozen=True)
class RecordShard:
    """A shard of the record as columns: what a worker streams through the matcher.

    ``content_ids[i]`` has digests ``md5[i]`` / ``sha256[i]`` (zero rows where absent, see
    ``md5_ok`` / ``sha256_ok``); PDQ row ``k`` belongs to content ``owner[k]``.
    """

    content_ids: list[str]
    times: npt.NDArray[np.float64]
    media_types: list[str | None]
    md5: npt.NDArray[np.uint8]
    md5_ok: npt.NDArray[np.bool_]
    sha256: npt.NDArray[np.uint8]
    sha256_ok: npt.NDArray[np.bool_]
    owner: npt.NDArray[np.int64]
    frame: npt.NDArray[np.int32]
    variant: npt.NDArray[np.int16]
    timestamp: npt.NDArray[np.float64]  # NaN for still images
    quality: npt.NDArray[np.int16]  # -1 when unknown
    codes: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.content_ids)

    def item(self, index: int) -> PublishedItem:
        """The full record of content ``index`` (for the few candidates a search found)."""
        rows = np.flatnonzero(self.owner == index)
        pdq = tuple(
            RecordedPdq(
                int(self.frame[k]),
                int(self.variant[k]),
                None if math.isnan(self.timestamp[k]) else float(self.timestamp[k]),
                None if self.quality[k] < 0 else int(self.quality[k]),
                self.codes[k].tobytes().hex(),
            )
            for k in rows.tolist()
        )
        return PublishedItem(
            self.content_ids[index],
            float(self.times[index]),
            self.media_types[index],
            self.md5[index].tobytes().hex() if self.md5_ok[index] else None,
            self.sha256[index].tobytes().hex() if self.sha256_ok[index] else None,
            pdq,
        )


class PublishedRecord:
    """The record in one SQLite file. ``PublishedRecord.open(path)``; thread-safe.

    ``read_only`` opens without creating or writing (batch workers on a shared data directory).
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._path = path
        self._read_only = read_only
        self._pool = ConnectionPool(path, read_only=read_only, what="published record")

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False) -> PublishedRecord:
        path = Path(path)
        if path.is_dir():
            raise StoreError(f"published record path {path} is a directory")
        if read_only and not path.exists():
            raise StoreError(f"no published-content record at {path}")
        record = cls(path, read_only=read_only)
        if not read_only:
            try:
                record._conn().executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                record.close()
                raise StoreCorruptError(f"{path} is not a usable published record: {exc}") from None
        return record

    @property
    def path(self) -> Path:
        return self._path

    def _conn(self) -> sqlite3.Connection:
        if not self._read_only:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        return self._pool.get()

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PublishedRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def add(self, item: PublishedItem) -> None:
        """Record (or re-record) one content id; the sink ``Scanner.scan`` writes through."""
        self.add_many([item])

    def add_many(self, items: Iterable[PublishedItem]) -> int:
        """Record several items in one transaction; a content id recorded again is replaced."""
        conn = self._conn()
        count = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                check_content_id(item.content_id)
                pdq, quality = item.pdq_hash
                row = conn.execute(
                    "INSERT INTO published (content_id, time, media_type, md5, sha256, pdq, "
                    "quality) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (content_id) DO UPDATE SET "
                    "time = excluded.time, media_type = excluded.media_type, md5 = excluded.md5, "
                    "sha256 = excluded.sha256, pdq = excluded.pdq, quality = excluded.quality "
                    "RETURNING id",
                    (
                        item.content_id,
                        float(item.time),
                        item.media_type,
                        _blob(item.md5),
                        _blob(item.sha256),
                        _blob(pdq),
                        quality,
                    ),
                ).fetchone()
                content = int(row[0])
                conn.execute("DELETE FROM published_pdq WHERE content = ?", (content,))
                conn.executemany(
                    "INSERT OR REPLACE INTO published_pdq "
                    "(content, frame, variant, timestamp, quality, code) VALUES (?,?,?,?,?,?)",
                    [
                        (content, r.frame, r.variant, r.timestamp, r.quality, bytes.fromhex(r.pdq))
                        for r in item.pdq
                    ],
                )
                count += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return count

    def remove(self, content_ids: Iterable[str]) -> int:
        """Forget content that was taken down or deleted; returns how many went."""
        conn = self._conn()
        ids = list(content_ids)
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = 0
            for content_id in ids:
                n += conn.execute(
                    "DELETE FROM published WHERE content_id = ?", (content_id,)
                ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return n

    def set_meta(self, key: str, value: str) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO published_meta (key, value) VALUES (?, ?)", (key, value)
        )

    def meta(self, key: str) -> str | None:
        try:
            row = (
                self._conn()
                .execute("SELECT value FROM published_meta WHERE key = ?", (key,))
                .fetchone()
            )
        except sqlite3.OperationalError:
            return None  # a read-only open of a record that never had meta written
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM published").fetchone()[0])

    def get(self, content_id: str) -> PublishedItem | None:
        row = (
            self._conn()
            .execute("SELECT id FROM published WHERE content_id = ?", (content_id,))
            .fetchone()
        )
        if row is None:
            return None
        shard = self.read_shard(int(row[0]), int(row[0]))
        return shard.item(0) if len(shard) else None

    def items(self) -> Iterator[PublishedItem]:
        """Every record, in id order, a shard at a time."""
        for lo, hi in self.shard_ranges(10_000):
            shard = self.read_shard(lo, hi)
            for index in range(len(shard)):
                yield shard.item(index)

    def shard_ranges(self, shard_rows: int) -> list[tuple[int, int]]:
        """Inclusive id ranges of about ``shard_rows`` contents each: the unit of batch work."""
        if shard_rows < 1:
            raise ConfigError(f"shard_rows must be >= 1, got {shard_rows}")
        ids = [r[0] for r in self._conn().execute("SELECT id FROM published ORDER BY id")]
        return [
            (ids[start], ids[min(start + shard_rows, len(ids)) - 1])
            for start in range(0, len(ids), shard_rows)
        ]

    def pdq_rows(self) -> int:
        """Recorded PDQ hashes in all (the work of a retro run over the whole record)."""
        return int(self._conn().execute("SELECT count(*) FROM published_pdq").fetchone()[0])

    def read_pdq(self, lo: int, hi: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """The PDQ codes of contents ``lo <= id <= hi`` and the content id (row id) of each:
        the only columns a retro worker streams, read without building a row object each."""
        conn = self._conn()
        owners, codes = [], []
        cursor = conn.execute(
            "SELECT content, code FROM published_pdq WHERE content BETWEEN ? AND ?", (lo, hi)
        )
        while chunk := cursor.fetchmany(1 << 16):
            owners.append(np.fromiter((r[0] for r in chunk), np.int64, len(chunk)))
            codes.append(_codes(b"".join(r[1] for r in chunk), len(chunk), 32))
        if not owners:
            return np.empty(0, np.int64), np.empty((0, 32), np.uint8)
        return np.concatenate(owners), np.concatenate(codes)

    def read_digests(
        self, lo: int, hi: int
    ) -> tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.uint8],
        npt.NDArray[np.bool_],
        npt.NDArray[np.uint8],
        npt.NDArray[np.bool_],
    ]:
        """Row ids, MD5 (with validity) and SHA-256 (with validity) of contents in a range."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, md5, sha256 FROM published WHERE id BETWEEN ? AND ? ORDER BY id",
                (lo, hi),
            )
            .fetchall()
        )
        md5, md5_ok = _digest_column([r[1] for r in rows], 16)
        sha, sha_ok = _digest_column([r[2] for r in rows], 32)
        return np.asarray([r[0] for r in rows], np.int64), md5, md5_ok, sha, sha_ok

    def read_contents(self, ids: Iterable[int]) -> list[PublishedItem]:
        """Full records of contents by row id (the few a retro search found), in id order."""
        out: list[PublishedItem] = []
        for row_id in sorted(set(ids)):
            shard = self.read_shard(row_id, row_id)
            out.extend(shard.item(i) for i in range(len(shard)))
        return out

    def read_shard(self, lo: int, hi: int) -> RecordShard:
        """Contents with ``lo <= id <= hi`` and their PDQ rows, as one snapshot."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            contents = conn.execute(
                "SELECT id, content_id, time, media_type, md5, sha256 FROM published "
                "WHERE id BETWEEN ? AND ? ORDER BY id",
                (lo, hi),
            ).fetchall()
            pdq = conn.execute(
                "SELECT content, frame, variant, timestamp, quality, code FROM published_pdq "
                "WHERE content BETWEEN ? AND ? ORDER BY content, frame, variant",
                (lo, hi),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        position = {row[0]: index for index, row in enumerate(contents)}
        md5, md5_ok = _digest_column([r[4] for r in contents], 16)
        sha, sha_ok = _digest_column([r[5] for r in contents], 32)
        return RecordShard(
            content_ids=[r[1] for r in contents],
            times=np.asarray([r[2] for r in contents], np.float64),
            media_types=[r[3] for r in contents],
            md5=md5,
            md5_ok=md5_ok,
            sha256=sha,
            sha256_ok=sha_ok,
            owner=np.asarray([position[r[0]] for r in pdq], np.int64),
            frame=np.asarray([r[1] for r in pdq], np.int32),
            variant=np.asarray([r[2] for r in pdq], np.int16),
            timestamp=np.asarray([np.nan if r[3] is None else r[3] for r in pdq], np.float64),
            quality=np.asarray([-1 if r[4] is None else r[4] for r in pdq], np.int16),
            codes=_codes(b"".join(r[5] for r in pdq), len(pdq), 32),
        )


def _blob(hex_value: str | None) -> bytes | None:
    return None if hex_value is None else bytes.fromhex(hex_value)


def _codes(data: bytes, rows: int, width: int) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8).reshape(rows, width).copy()


def _digest_column(
    values: Sequence[bytes | None], width: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    ok = np.asarray([v is not None and len(v) == width for v in values], np.bool_)
    zero = bytes(width)
    data = b"".join(v if v is not None and len(v) == width else zero for v in values)
    return _codes(data, len(values), width), ok
