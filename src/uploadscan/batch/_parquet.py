"""Parquet shards of the published-content record, for platforms too large for one SQLite file.

One flat table, one row per recorded PDQ hash (content columns repeated; Parquet's dictionary
and run-length encodings make the repetition nearly free), so any engine (Dask, DuckDB, Spark)
can read it without knowing our schema and a worker can stream the codes of a shard as one
fixed-width column. A content without any PDQ row (hashing gave digests only) has one row with
a null ``pdq``. Files are ``part-00000.parquet``, ``part-00001.parquet``...: a shard is a file,
and a file holds whole contents, so a worker never sees half a video.

pyarrow is imported only here, and only when a function is called (``uploadscan[dask]``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ConfigError, StoreError
from ..store._published import PublishedItem, PublishedRecord, RecordShard
from ._delta import DeltaMatcher

__all__ = [
    "SCHEMA_FIELDS",
    "export_parquet",
    "parquet_candidates",
    "parquet_shards",
    "read_parquet_shard",
    "shard_locations",
]

SCHEMA_FIELDS = (
    "content_id",
    "time",
    "media_type",
    "md5",
    "sha256",
    "frame",
    "variant",
    "timestamp",
    "quality",
    "pdq",
)
_PART_PREFIX = "part-"


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ConfigError('Parquet export needs pyarrow: pip install "uploadscan[dask]"') from None
    return pa, pq


def schema() -> Any:
    pa, _ = _pyarrow()
    return pa.schema(
        [
            ("content_id", pa.string()),
            ("time", pa.float64()),
            ("media_type", pa.string()),
            ("md5", pa.binary(16)),
            ("sha256", pa.binary(32)),
            ("frame", pa.int32()),
            ("variant", pa.int16()),
            ("timestamp", pa.float64()),
            ("quality", pa.int16()),
            ("pdq", pa.binary(32)),
        ]
    )


def shard_table(shard: RecordShard) -> Any:
    """The Parquet table of one ``RecordShard`` (contents without PDQ get a null-pdq row)."""
    pa, _ = _pyarrow()
    n = len(shard)
    bare = np.setdiff1d(np.arange(n), shard.owner)
    owner = np.concatenate([shard.owner, bare]).astype(np.int64)
    extra = bare.shape[0]
    order = np.argsort(owner, kind="stable")
    owner = owner[order]
    codes = np.concatenate([shard.codes, np.zeros((extra, 32), np.uint8)])[order]
    has_pdq = np.concatenate([np.ones(shard.codes.shape[0], bool), np.zeros(extra, bool)])[order]

    def pick(values: npt.NDArray[Any], fill: Any) -> npt.NDArray[Any]:
        return np.concatenate([values, np.full(extra, fill, values.dtype)])[order]

    def fixed(data: npt.NDArray[np.uint8], valid: npt.NDArray[np.bool_], width: int) -> Any:
        bitmap = None if valid.all() else pa.array(valid).buffers()[1]
        return pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width),
            len(valid),
            [bitmap, pa.py_buffer(np.ascontiguousarray(data))],
            null_count=-1,
        )

    timestamp = pick(shard.timestamp, np.nan)
    quality = pick(shard.quality, -1)
    ids = pa.array(shard.content_ids, pa.string())
    media = pa.array(shard.media_types, pa.string())
    take = pa.array(owner)
    columns = [
        ids.take(take),
        pa.array(shard.times[owner]),
        media.take(take),
        fixed(shard.md5[owner], shard.md5_ok[owner], 16),
        fixed(shard.sha256[owner], shard.sha256_ok[owner], 32),
        pa.array(pick(shard.frame, -1)),
        pa.array(pick(shard.variant, 0)),
        pa.array(timestamp, mask=np.isnan(timestamp)),
        pa.array(quality, mask=quality < 0),
        fixed(codes, has_pdq, 32),
    ]
    return pa.Table.from_arrays(columns, schema=schema())


def export_parquet(
    record: PublishedRecord, directory: str | os.PathLike[str], *, shard_rows: int = 1_000_000
) -> list[Path]:
    """Write the record as Parquet shards of about ``shard_rows`` contents; returns the files.

    Existing ``part-*.parquet`` files in ``directory`` are replaced (a shard count that
    shrank must not leave stale shards behind). Each file is written under a temporary name
    and renamed, so a reader never sees half a shard.
    """
    _, pq = _pyarrow()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for old in parquet_shards(out):
        old.unlink()
    written = []
    for number, (lo, hi) in enumerate(record.shard_ranges(shard_rows)):
        path = out / f"{_PART_PREFIX}{number:05d}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(shard_table(record.read_shard(lo, hi)), tmp, compression="zstd")
        os.replace(tmp, path)
        written.append(path)
    return written


def parquet_shards(directory: str | os.PathLike[str]) -> list[Path]:
    """The shard files of a local export, in order."""
    base = Path(directory)
    if not base.is_dir():
        raise StoreError(f"no Parquet export at {base}")
    return sorted(base.glob(f"{_PART_PREFIX}*.parquet"))


def is_url(location: str) -> bool:
    """An fsspec URL (``s3://``, ``gs://``, ``file://``...) rather than a local path."""
    return "://" in location


def _fsspec() -> Any:
    try:
        import fsspec  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ConfigError('URLs need fsspec: pip install "uploadscan[dask]"') from None
    return fsspec


def shard_locations(export: str | os.PathLike[str]) -> list[str]:
    """The shard files of an export, in order: local paths, or URLs for an fsspec URL (object
    storage that every worker can read, such as ``s3://bucket/published/``)."""
    location = os.fspath(export)
    if not is_url(location):
        return [str(p) for p in parquet_shards(location)]
    fs, root = _fsspec().core.url_to_fs(location)
    try:
        found = fs.glob(f"{root.rstrip('/')}/{_PART_PREFIX}*.parquet")
    except OSError as exc:
        raise StoreError(f"cannot list the Parquet export {location}: {exc}") from None
    if not found and not fs.isdir(root):
        raise StoreError(f"no Parquet export at {location}")
    return [fs.unstrip_protocol(p) for p in sorted(found)]


def shard_rows(location: str) -> int:
    """Rows of one shard file, from its footer (no data read)."""
    with _open(location) as shard:
        return int(shard.metadata.num_rows)


@contextmanager
def _open(location: str) -> Iterator[Any]:
    """A ``pyarrow.parquet.ParquetFile`` for a local path (memory-mapped) or an fsspec URL,
    closed (with the URL's file handle) on exit."""
    pa, pq = _pyarrow()
    with ExitStack() as stack:
        try:
            if is_url(location):
                fs, path = _fsspec().core.url_to_fs(location)
                source = stack.enter_context(fs.open(path, "rb"))
                shard = stack.enter_context(pq.ParquetFile(source))
            else:
                shard = stack.enter_context(pq.ParquetFile(location, memory_map=True))
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"cannot read Parquet shard {location}: {exc}") from None
        yield shard


def _fixed_column(column: Any, width: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """A fixed-size binary column as an (n, width) array plus its validity, without copies
    per value (nulls come back as zero rows)."""
    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    n = len(column)
    valid = (
        np.ones(n, bool)
        if column.null_count == 0
        else np.asarray(column.is_valid().to_numpy(zero_copy_only=False), bool)
    )
    buffer = column.buffers()[1]
    if buffer is None:
        return np.zeros((n, width), np.uint8), valid
    start = column.offset * width
    data = np.frombuffer(buffer, dtype=np.uint8)[start : start + n * width].reshape(n, width)
    if column.null_count:
        data = data.copy()
        data[~valid] = 0
    return data, valid


#: Rows per streamed batch: 64 k PDQ codes are 2 MB, so a worker's memory stays flat
#: whatever the shard size, and each batch is large enough to keep the matcher vectorised.
BATCH_ROWS = 1 << 16


def parquet_candidates(
    location: str, matcher: DeltaMatcher, *, batch_rows: int = BATCH_ROWS
) -> tuple[list[PublishedItem], int]:
    """Contents of one shard with a recorded hash within reach of the delta, and the number
    of rows read.

    Streams only the hash columns the delta needs, ``batch_rows`` at a time; the content ids
    and the other columns are read only when something hit, and only the hit contents' rows
    are kept (all of them, wherever they sit in the file, so a video is judged whole).
    """
    pa, _ = _pyarrow()
    columns = [
        name
        for name, wanted in (
            ("pdq", matcher.wants_pdq),
            ("md5", matcher.wants_md5),
            ("sha256", matcher.wants_sha256),
        )
        if wanted
    ]
    if not columns:
        return [], 0
    try:
        with _open(location) as shard:
            return _scan(shard, matcher, columns, batch_rows)
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"cannot read Parquet shard {location}: {exc}") from None


def _scan(
    shard: Any, matcher: DeltaMatcher, columns: list[str], batch_rows: int
) -> tuple[list[PublishedItem], int]:
    """``parquet_candidates`` on an open file: hit rows first, then whole contents."""
    pa, _ = _pyarrow()
    hit_rows = []
    first = 0
    for batch in shard.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False):
        hit = np.zeros(batch.num_rows, bool)
        for name in columns:
            codes, valid = _fixed_column(batch.column(name), 32 if name != "md5" else 16)
            if name == "pdq":
                hit |= matcher.pdq_hits(codes, valid)
            else:
                hit |= matcher.digest_hits(name, codes, valid)
        hit_rows.append(np.flatnonzero(hit) + first)
        first += batch.num_rows
    rows = np.concatenate(hit_rows) if hit_rows else np.empty(0, np.int64)
    if not rows.shape[0]:
        return [], first
    ids = shard.read(columns=["content_id"], use_threads=False).column("content_id")
    wanted = pa.array(sorted(set(ids.take(pa.array(rows)).to_pylist())), pa.string())
    del ids
    found = _contents(shard, wanted, batch_rows)
    return [found.item(i) for i in range(len(found))], first


def _contents(shard: Any, wanted: Any, batch_rows: int) -> RecordShard:
    """Every row of the ``wanted`` content ids, as a ``RecordShard``."""
    pa, _ = _pyarrow()
    import pyarrow.compute as pc  # type: ignore[import-untyped,unused-ignore]

    parts = []
    for batch in shard.iter_batches(
        batch_size=batch_rows, columns=list(SCHEMA_FIELDS), use_threads=False
    ):
        keep = pc.is_in(batch.column("content_id"), value_set=wanted)
        if pc.any(keep).as_py():
            parts.append(batch.filter(keep))
    table = pa.Table.from_batches(parts) if parts else schema().empty_table()
    return _record_shard(table)


def read_parquet_shard(path: str | os.PathLike[str]) -> RecordShard:
    """One whole shard file as a ``RecordShard`` (the columnar form of the record)."""
    pa, _ = _pyarrow()
    location = os.fspath(path)
    try:
        with _open(location) as shard:
            table = shard.read(columns=list(SCHEMA_FIELDS), use_threads=False)
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"cannot read Parquet shard {location}: {exc}") from None
    return _record_shard(table)


def _record_shard(table: Any) -> RecordShard:
    """Rows of the flat table grouped by content (first-seen order) as a ``RecordShard``."""
    encoded = table.column("content_id").combine_chunks().dictionary_encode()
    row_owner = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), np.int64)
    content_ids = [str(x) for x in encoded.dictionary.to_pylist()]
    _, first = np.unique(row_owner, return_index=True)
    md5, md5_ok = _fixed_column(table.column("md5"), 16)
    sha, sha_ok = _fixed_column(table.column("sha256"), 32)
    codes, has_pdq = _fixed_column(table.column("pdq"), 32)
    media = table.column("media_type").to_pylist()

    def numbers(name: str, fill: float, dtype: Any) -> npt.NDArray[Any]:
        column = table.column(name).combine_chunks()
        values = column.to_numpy(zero_copy_only=False)
        return np.where(np.asarray(column.is_valid(), bool), values, fill).astype(dtype)

    times = np.asarray(table.column("time").to_numpy(), np.float64)
    return RecordShard(
        content_ids=content_ids,
        times=times[first],
        media_types=[media[i] for i in first.tolist()],
        md5=md5[first],
        md5_ok=md5_ok[first],
        sha256=sha[first],
        sha256_ok=sha_ok[first],
        owner=row_owner[has_pdq],
        frame=numbers("frame", -1, np.int32)[has_pdq],
        variant=numbers("variant", 0, np.int16)[has_pdq],
        timestamp=numbers("timestamp", math.nan, np.float64)[has_pdq],
        quality=numbers("quality", -1, np.int16)[has_pdq],
        codes=codes[has_pdq],
    )
