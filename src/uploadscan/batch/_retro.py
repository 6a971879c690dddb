"""Retroactive matching: which already-published content do newly listed hashes name?

After a sync, the entries it added (``store.changes(type, since, upto)``) are matched against
the published-content record with the same rules as an upload, so a platform learns which of
its existing posts a new list names — not only which future uploads.

The two sides are very unequal: a sync adds thousands of entries, the record holds millions of
hashes. So the small side is indexed (the added PDQ codes in a temporary ``HammingIndex``,
built once per worker; added MD5/SHA-256 as a sorted array) and the large side is streamed,
shard by shard, through it, on Dask workers or in this process. Every recorded PDQ query
counts — the image's hash, its dihedral and trimmed variants, each video frame — and the
search radius is the widest threshold of any list, exactly as ``scan`` searches.

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

import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._action import Action
from .._errors import ConfigError
from .._judge import decision_record
from .._matching import search_radius
from .._scanner import Scanner, judge_queries
from .._verdict import Verdict
from ..hashing._registry import registry
from ..index._hamming import HammingIndex, SearchHits
from ..store._audit import DecisionOrigin
from ..store._lists import ListKind
from ..store._published import PUBLISHED_FILENAME, PublishedItem, PublishedRecord, RecordShard
from ..store._store import Store
from ._dask import TaskRunner, open_runner, worker_cache

__all__ = ["Delta", "RetroResult", "RetroVerdict", "find_candidates", "load_delta", "retro"]

RETRO_VERSION_KEY = "retro_version"
_NAMESPACE = uuid.UUID("1b0c3f7e-6f49-5b7a-9d55-2a8f0f2e4c11")


@dataclass(frozen=True)
class Delta:
    """The entries a version range added, as arrays a worker can index (the small side)."""

    since: int
    upto: int
    token: str
    radius: int
    pdq_ids: npt.NDArray[np.int64]
    pdq_codes: npt.NDArray[np.uint8]
    md5: npt.NDArray[np.void]
    sha256: npt.NDArray[np.void]
    digest_ids: frozenset[int] = frozenset()

    @property
    def size(self) -> int:
        return int(self.pdq_ids.shape[0] + self.md5.shape[0] + self.sha256.shape[0])

    @property
    def entry_ids(self) -> frozenset[int]:
        return frozenset(self.pdq_ids.tolist()) | self.digest_ids


def _as_void(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
    codes = np.ascontiguousarray(codes)
    return np.sort(codes.view(np.dtype((np.void, codes.shape[1]))).ravel())


def load_delta(store: Store, since: int, upto: int, radius: int) -> Delta:
    """What the store gained between ``since`` (exclusive) and ``upto`` (inclusive)."""
    if not 0 <= since <= upto:
        raise ConfigError(f"need 0 <= since ({since}) <= upto ({upto})")
    pdq_ids, pdq_codes, _ = store.changes("pdq", since, upto)
    md5_ids, md5_codes, _ = store.changes("md5", since, upto)
    sha_ids, sha_codes, _ = store.changes("sha256", since, upto)
    return Delta(
        since=since,
        upto=upto,
        token=f"{store.store_id}:{since}:{upto}:{radius}",
        radius=radius,
        pdq_ids=pdq_ids,
        pdq_codes=np.ascontiguousarray(pdq_codes),
        md5=_as_void(md5_codes.reshape(-1, 16)),
        sha256=_as_void(sha_codes.reshape(-1, 32)),
        digest_ids=frozenset(md5_ids.tolist()) | frozenset(sha_ids.tolist()),
    )


class _DeltaIndex:
    """The delta's PDQ codes in a temporary index file, one per worker process and delta."""

    def __init__(self, delta: Delta) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="uploadscan-delta-")
        self._index = HammingIndex.build(
            delta.pdq_codes, delta.pdq_ids, Path(self._dir.name) / "delta.idx"
        )

    def search(self, codes: npt.NDArray[np.uint8], radius: int) -> SearchHits:
        return self._index.search(codes, radius)

    def close(self) -> None:
        self._dir.cleanup()


#: Recorded codes searched per call: bounds the hit arrays of one step.
_SEARCH_CHUNK = 1 << 18


def find_candidates(shard: RecordShard, delta: Delta) -> list[PublishedItem]:
    """Contents of ``shard`` with a recorded hash within reach of an added entry."""
    hit = np.zeros(len(shard), bool)
    if delta.pdq_ids.shape[0] and shard.codes.shape[0]:
        index: _DeltaIndex = worker_cache(f"delta:{delta.token}", lambda: _DeltaIndex(delta))
        for start in range(0, shard.codes.shape[0], _SEARCH_CHUNK):
            found = index.search(shard.codes[start : start + _SEARCH_CHUNK], delta.radius)
            if len(found):
                hit[shard.owner[start + found.query.astype(np.int64)]] = True
    for codes, ok, added in (
        (shard.md5, shard.md5_ok, delta.md5),
        (shard.sha256, shard.sha256_ok, delta.sha256),
    ):
        if added.shape[0] and len(shard):
            hit |= ok & np.isin(_rows(codes), added)
    return [shard.item(i) for i in np.flatnonzero(hit).tolist()]


def _rows(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
    codes = np.ascontiguousarray(codes)
    return codes.view(np.dtype((np.void, codes.shape[1]))).ravel()


def _sqlite_task(path: str, lo: int, hi: int, delta: Delta) -> list[PublishedItem]:
    record: PublishedRecord = worker_cache(
        f"record:{path}", lambda: PublishedRecord.open(path, read_only=True)
    )
    return find_candidates(record.read_shard(lo, hi), delta)


def _parquet_task(path: str, delta: Delta) -> list[PublishedItem]:
    from ._parquet import read_parquet_shard

    return find_candidates(read_parquet_shard(path), delta)


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
    shard_rows: int = 100_000,
    record_audit: bool = True,
    on_verdict: Callable[[RetroVerdict], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RetroResult:
    """Match the entries added in (``since_version``, ``upto_version``] against the record.

    Defaults: ``since_version`` the ``upto`` of the last completed run (0 the first time:
    every entry), ``upto_version`` the store's version now. The record is the data directory's
    ``published.sqlite3``, or the Parquet export in ``parquet``. Work runs in this process
    (``workers=0``, the default), on a ``LocalCluster`` of ``workers`` processes, on the Dask
    cluster at ``scheduler``, or on a given ``runner``.
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
        tasks: list[tuple[Callable[..., list[PublishedItem]], tuple[Any, ...]]] = []
        if delta.size:
            if parquet is not None:
                from ._parquet import parquet_shards

                tasks = [(_parquet_task, (str(p),)) for p in parquet_shards(parquet)]
            else:
                path = str(record.path)
                tasks = [
                    (_sqlite_task, (path, lo, hi)) for lo, hi in record.shard_ranges(shard_rows)
                ]
        found: list[PublishedItem] = []
        if tasks:
            with contextlib_runner(runner, scheduler, workers) as active:
                shared = active.share(delta)
                fn = tasks[0][0]
                args = [(*a, shared) for _, a in tasks]
                for done, (_, items) in enumerate(
                    active.map_unordered(fn, args, name=f"retro-{uuid.uuid4().hex[:8]}"), 1
                ):
                    found.extend(items)
                    if on_progress is not None:
                        on_progress(done, len(args))
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
