"""Retroactive matching: which already-published content do newly listed hashes name?

After a sync, the entries it added (``store.changes(type, since, upto)``) are matched against
the published-content record with the same rules as an upload, so a platform learns which of
its existing posts a new list names — not only which future uploads.

The two sides are very unequal: a sync adds thousands of entries, the record holds millions of
hashes. So the small side is prepared once per worker (``_delta.DeltaMatcher``: the added PDQ
codes in expanded substring tables, the added MD5/SHA-256 as sorted arrays; the delta itself
is broadcast to the workers once) and the large side is streamed through it: each task reads
one shard, only the hash columns, in batches of 64 k rows (``_parquet.parquet_candidates``, or
``PublishedRecord.read_pdq`` for the SQLite record), and sends back only the few contents
that hit. Every recorded PDQ query counts — the image's hash, its dihedral and trimmed
variants, each video frame — and the search radius is the widest threshold of any list,
exactly as ``scan`` searches.

A shard only yields *candidates*: contents with a hit. Those few are then judged on the client
through the scanner's own lookup and policy (per-list thresholds, quality floor, labels,
allowlists, the video time-coverage rule, images found as video frames), against the lists as
they are now, so a retro verdict is the verdict ``scan`` would give the content today. It is
reported when it flags the content (review or block) through at least one entry the range
added, or a listed video the range added frames to.

Verdicts are audited like scan decisions, under an id derived from (store, content id, upto
version): a job that is killed and run again, or two runs over the same range, never record a
decision twice. The last completed ``upto`` is kept in the record, the default ``since`` of
the next run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._action import Action
from .._judge import decision_record
from .._matching import search_radius
from .._scanner import Scanner, judge_queries
from .._verdict import Verdict
from ..hashing._registry import registry
from ..store._audit import DecisionOrigin
from ..store._lists import ListKind
from ..store._published import PUBLISHED_FILENAME, PublishedItem, PublishedRecord, RecordShard
from ..store._store import Store
from ._dask import TaskRunner, open_runner, worker_cache
from ._delta import Delta, DeltaMatcher, load_delta

__all__ = ["RetroResult", "RetroVerdict", "find_candidates", "retro"]

RETRO_VERSION_KEY = "retro_version"
#: Splitting the SQLite record: tasks per worker, and the bounds of a task, in contents.
TASKS_PER_WORKER = 4
MIN_SHARD_ROWS = 1_000
MAX_SHARD_ROWS = 100_000
_NAMESPACE = uuid.UUID("1b0c3f7e-6f49-5b7a-9d55-2a8f0f2e4c11")


@dataclass(frozen=True)
class ShardResult:
    """What a worker sends back for one shard: the few candidates and how many recorded
    rows it read (for progress), never the shard itself."""

    items: list[PublishedItem]
    rows: int


def matcher_for(delta: Delta) -> DeltaMatcher:
    """The delta's matcher, built once per worker process and kept for every shard."""
    built: DeltaMatcher = worker_cache(
        f"delta:{delta.token}", lambda: DeltaMatcher(delta), group="retro-delta"
    )
    return built


def find_candidates(shard: RecordShard, delta: Delta) -> list[PublishedItem]:
    """Contents of ``shard`` with a recorded hash within reach of an added entry."""
    matcher = matcher_for(delta)
    hit = np.zeros(len(shard), bool)
    pdq = matcher.pdq_hits(shard.codes)
    hit[shard.owner[pdq]] = True
    hit |= matcher.digest_hits("md5", shard.md5, shard.md5_ok)
    hit |= matcher.digest_hits("sha256", shard.sha256, shard.sha256_ok)
    return [shard.item(i) for i in np.flatnonzero(hit).tolist()]


def _sqlite_task(path: str, lo: int, hi: int, delta: Delta) -> ShardResult:
    """One range of content rows of ``published.sqlite3``: read the hash columns only, then
    the full records of the contents that hit."""
    record: PublishedRecord = worker_cache(
        f"record:{path}", lambda: PublishedRecord.open(path, read_only=True)
    )
    matcher = matcher_for(delta)
    contents: set[int] = set()
    rows = 0
    if matcher.wants_pdq:
        owners, codes = record.read_pdq(lo, hi)
        rows = int(owners.shape[0])
        contents.update(owners[matcher.pdq_hits(codes)].tolist())
    if matcher.wants_md5 or matcher.wants_sha256:
        ids, md5, md5_ok, sha256, sha256_ok = record.read_digests(lo, hi)
        hit = matcher.digest_hits("md5", md5, md5_ok)
        hit |= matcher.digest_hits("sha256", sha256, sha256_ok)
        contents.update(ids[hit].tolist())
        if not matcher.wants_pdq:
            rows = int(ids.shape[0])
    return ShardResult(record.read_contents(sorted(contents)), rows)


def _parquet_task(location: str, delta: Delta) -> ShardResult:
    from ._parquet import parquet_candidates

    items, rows = parquet_candidates(location, matcher_for(delta))
    return ShardResult(items, rows)


# ---------------------------------------------------------------------- judging (client side)


@dataclass(frozen=True)
class RetroVerdict:
    """A published content id and the verdict the new entries call for. ``new`` is False
    when an earlier run over the same range already recorded it."""

    content_id: str
    verdict: Verdict
    new: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"content_id": self.content_id, **self.verdict.to_dict()}


@dataclass(frozen=True)
class RetroResult:
    since_version: int
    upto_version: int
    delta_entries: int
    shards: int
    candidates: int
    verdicts: list[RetroVerdict] = field(default_factory=list)
    seconds: float = 0.0


def batch_verdict_id(store: Store, kind: str, content_id: str, version: int) -> str:
    """The idempotency key of a batch decision: one per (store, job kind, content, version)."""
    return uuid.uuid5(_NAMESPACE, f"{kind}\0{store.store_id}\0{content_id}\0{version}").hex


def audit(store: Store, verdict: Verdict, sha256: str | None, origin: DecisionOrigin) -> bool:
    """Record ``verdict`` as ``Scanner`` does; False (and nothing written) if its id is there."""
    if store.decisions(verdict_id=verdict.id):
        return False
    store.record_decision(decision_record(verdict, sha256=sha256, origin=origin))
    return True


def judge(scanner: Scanner, item: PublishedItem, *, verdict_id: str) -> Verdict:
    """The verdict ``scanner.scan`` would give the recorded content now (hashing excepted)."""
    return judge_queries(
        scanner,
        item.queries(),
        upload_frames=item.frames(),
        media_type=item.media_type,
        started=time.perf_counter(),
        verdict_id=verdict_id,
        origin=None,
    )


def _involves_delta(
    store: Store, verdict: Verdict, delta: Delta, entry_ids: frozenset[int]
) -> bool:
    if verdict.action is Action.ALLOW:
        return False
    for match in verdict.matches:
        if match.list_kind is ListKind.ALLOW:
            continue
        if match.entry_id in entry_ids:
            return True
        if match.video is not None and any(
            e.id in entry_ids for e in store.video_frames(match.list_name, match.video)
        ):
            return True
    return False


def retro(
    scanner: Scanner,
    *,
    since_version: int | None = None,
    upto_version: int | None = None,
    parquet: str | Path | None = None,
    scheduler: str | None = None,
    workers: int | None = 0,
    runner: TaskRunner | None = None,
    shard_rows: int | None = None,
    record_audit: bool = True,
    on_verdict: Callable[[RetroVerdict], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RetroResult:
    """Match the entries added in (``since_version``, ``upto_version``] against the record.

    Defaults: ``since_version`` the ``upto`` of the last completed run (0 the first time:
    every entry), ``upto_version`` the store's version now. The record is the data directory's
    ``published.sqlite3``, or the Parquet export in ``parquet`` (a directory, or an fsspec URL
    every worker can read). Work runs in this process (``workers=0``, the default), on a
    ``LocalCluster`` of ``workers`` processes, on the Dask cluster at ``scheduler``, or on a
    given ``runner``. ``shard_rows`` contents of the SQLite record make one task (default:
    sized from the record and the workers). ``on_progress(done, total)`` counts recorded rows
    (PDQ hashes, and contents when only digests were added), a shard at a time.
    """
    started = time.monotonic()
    store = scanner.store
    record = PublishedRecord.open(scanner.home / PUBLISHED_FILENAME)
    try:
        upto = store.version() if upto_version is None else int(upto_version)
        if since_version is None:
            stored = record.meta(RETRO_VERSION_KEY)
            since = int(stored) if stored is not None else 0
        else:
            since = int(since_version)
        since = min(since, upto)
        lists = {hl.name: hl for hl in store.lists()}
        radius = int(search_radius(registry.get("pdq"), lists))
        delta = load_delta(store, since, upto, radius)
        found: list[PublishedItem] = []
        tasks: list[tuple[Any, ...]] = []
        if delta.size and (parquet is not None or record.count()):
            with contextlib_runner(runner, scheduler, workers) as active:
                fn, tasks, total = _plan(record, delta, parquet, shard_rows, active.workers)
                shared = active.share(delta)
                args = [(*task, shared) for task in tasks]
                done = 0
                name = f"retro-{uuid.uuid4().hex[:8]}"
                for _, result in active.map_unordered(fn, args, name=name):
                    found.extend(result.items)
                    done += result.rows
                    if on_progress is not None:
                        on_progress(done, max(total, done))
        verdicts = _judge_all(scanner, found, delta, record_audit, on_verdict)
        if record_audit and upto > int(record.meta(RETRO_VERSION_KEY) or 0):
            record.set_meta(RETRO_VERSION_KEY, str(upto))
        return RetroResult(
            since_version=since,
            upto_version=upto,
            delta_entries=delta.size,
            shards=len(tasks),
            candidates=len(found),
            verdicts=verdicts,
            seconds=time.monotonic() - started,
        )
    finally:
        record.close()


def _plan(
    record: PublishedRecord,
    delta: Delta,
    parquet: str | Path | None,
    shard_rows: int | None,
    workers: int,
) -> tuple[Callable[..., ShardResult], list[tuple[Any, ...]], int]:
    """The task function, its per-shard arguments and the rows they will read in all.

    A Parquet export is one task per file. The SQLite record is cut into ranges of
    ``shard_rows`` contents, by default enough for ``TASKS_PER_WORKER`` tasks per worker
    (between ``MIN_SHARD_ROWS`` and ``MAX_SHARD_ROWS`` contents each).
    """
    if parquet is not None:
        from ._parquet import shard_locations
        from ._parquet import shard_rows as rows_in

        locations = shard_locations(parquet)
        return _parquet_task, [(p,) for p in locations], sum(rows_in(p) for p in locations)
    contents = record.count()
    if shard_rows is None:
        wanted = -(-contents // (max(1, workers) * TASKS_PER_WORKER))
        shard_rows = max(MIN_SHARD_ROWS, min(MAX_SHARD_ROWS, wanted))
    path = str(record.path)
    ranges = record.shard_ranges(shard_rows)
    total = record.pdq_rows() if delta.pdq_ids.shape[0] else contents
    return _sqlite_task, [(path, lo, hi) for lo, hi in ranges], total


def _judge_all(
    scanner: Scanner,
    found: Sequence[PublishedItem],
    delta: Delta,
    record_audit: bool,
    on_verdict: Callable[[RetroVerdict], None] | None,
) -> list[RetroVerdict]:
    store = scanner.store
    entry_ids = delta.entry_ids
    out = []
    for item in sorted(found, key=lambda i: i.content_id):
        verdict_id = batch_verdict_id(store, "retro", item.content_id, delta.upto)
        verdict = judge(scanner, item, verdict_id=verdict_id)
        if not _involves_delta(store, verdict, delta, entry_ids):
            continue
        new = audit(store, verdict, item.sha256, DecisionOrigin.RETRO) if record_audit else True
        result = RetroVerdict(item.content_id, verdict, new)
        out.append(result)
        if on_verdict is not None:
            on_verdict(result)
    return out


def contextlib_runner(runner: TaskRunner | None, scheduler: str | None, workers: int | None) -> Any:
    """``runner`` as a no-op context, or a new one from ``open_runner``."""
    import contextlib

    if runner is not None:
        return contextlib.nullcontext(runner)
    return open_runner(scheduler=scheduler, workers=workers)


def with_id(verdict: Verdict, verdict_id: str) -> Verdict:
    return replace(verdict, id=verdict_id)
