"""Batch jobs beyond one upload: retroactive matching and back-catalogue scans, on Dask.

- ``scanner.scan(data, content_id="post/123")`` records the content id with the hashes the scan
  computed (the published-content record, ``published.sqlite3`` in the data directory);
  ``export_parquet`` writes it as Parquet shards for large platforms.
- ``retro(scanner)`` matches the entries recent syncs added against that record, with the same
  rules as an upload, and returns (and audits) verdicts naming content ids.
- ``backfill(scanner, source)`` scans a directory, a listing file or an fsspec URL of stored
  media, resumably, recording verdicts and the published-content record.

Both run in this process, on a ``LocalCluster`` of worker processes (``workers=N``) or on an
existing Dask cluster (``scheduler="tcp://..."``); see docs/scale.md. Dask and pyarrow are
optional (``pip install "uploadscan[dask]"``) and only imported when a job needs them.
"""

from __future__ import annotations

from ..store._published import PUBLISHED_FILENAME, PublishedItem, PublishedRecord, RecordedPdq
from ._backfill import BackfillItem, BackfillResult, backfill, list_source
from ._parquet import export_parquet, read_parquet_shard
from ._retro import RetroResult, RetroVerdict, retro

__all__ = [
    "PUBLISHED_FILENAME",
    "BackfillItem",
    "BackfillResult",
    "PublishedItem",
    "PublishedRecord",
    "RecordedPdq",
    "RetroResult",
    "RetroVerdict",
    "backfill",
    "export_parquet",
    "list_source",
    "read_parquet_shard",
    "retro",
]
