"""Applying a source's batches to the store: one transaction per batch, checkpoint included.

This is the only code that writes synced entries. Each ``FetchBatch`` goes through
``Store.apply_batch`` with its checkpoint, so the stored checkpoint always matches what the
store holds and an interrupted sync resumes exactly where it stopped. ``last_sync`` is set
only when the source has nothing more to give, so a half-finished sync still looks stale to
the scanner's fail mode.

A full refetch (first sync, or a ``StaleCheckpointError``) of a paged source cannot be one
``replace`` batch without holding the whole list in memory, and replacing page by page would
briefly drop every entry not yet re-fetched. Instead the pages are applied as ordinary
upserts without advancing the checkpoint, and a last batch deletes whatever live entry the
refetch did not see ("mark and sweep"). Interrupted, the stored checkpoint is still the old
one, so the next sync starts the refetch again.

Lists are independent, so ``sync_lists`` syncs them concurrently, each on its own thread with
its own store connection and under its own whole-sync deadline (``_deadline``): a list whose
server hangs or trickles bytes times out alone, with its previous entries intact, while the
others finish on time. SQLite serialises the few write transactions; downloads and parsing,
where the time goes, overlap.

Progress is reported through a plain ``on_progress(done, total)`` callback (records read so
far; ``total`` when the sources know it, else ``None``), so the command line can draw it and
library callers can log it without this package knowing about either.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .._errors import ConfigError, StaleCheckpointError, SyncTimeoutError, UploadScanError
from ..store._lists import EntryUpsert, HashList, SyncResult
from ..store._packed import PackedUpserts
from ..store._store import Store
from ._base import FetchBatch, Source
from ._credentials import Credentials
from ._deadline import DEFAULT_DEADLINE_SECONDS, check_deadline, sync_deadline
from ._uri import source_from_uri

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "MAX_PARALLEL_LISTS",
    "ProgressCallback",
    "SyncResult",
    "sync_all",
    "sync_list",
    "sync_lists",
]

# More lists than this wait for a free thread; each is still bounded by its own deadline.
MAX_PARALLEL_LISTS = 16
ProgressCallback = Callable[[int, int | None], None]
_T = TypeVar("_T")
_COUNT_EVERY = 1024  # records between progress reports and deadline checks
_REPORT_INTERVAL = 0.1  # seconds between progress callbacks of one list
_NEEDS_CREDENTIALS = ("tcap", "threatexchange")


def sync_list(
    store: Store,
    name: str,
    *,
    source: Source | None = None,
    credentials: Credentials | None = None,
    deadline_seconds: float | None = DEFAULT_DEADLINE_SECONDS,
    on_progress: ProgressCallback | None = None,
) -> SyncResult:
    """Bring list ``name`` up to date from its configured source (or ``source``).

    The whole sync must finish within ``deadline_seconds`` (``None``: only the per-request
    limits apply), else ``SyncTimeoutError``. ``on_progress(done, total)`` hears about the
    records read (``total`` ``None`` while unknown), at most ten times a second.

    Raises the source's ``SyncError`` (``FeedVerificationError``...) or the store's
    ``InvalidHashError``; batches applied before the failure stay, with their checkpoint.
    """
    with sync_deadline(deadline_seconds, f"list {name!r}"):
        return _sync_list(store, name, source, credentials, _ListProgress(on_progress))


def _sync_list(
    store: Store,
    name: str,
    source: Source | None,
    credentials: Credentials | None,
    progress: _ListProgress,
) -> SyncResult:
    started = time.monotonic()
    hash_list = store.get_list(name)
    if source is None:
        if hash_list.source is None or not hash_list.source_kind.synced:
            # No source, or an own list (local:): its entries are managed here.
            return SyncResult(name, hash_list.source or "", seconds=time.monotonic() - started)
        credentials = credentials or Credentials.discover(_home_of(store))
        source = source_from_uri(hash_list.source, credentials=credentials)
    tally = _Tally(name, source.description, progress)
    checkpoint = hash_list.checkpoint
    try:
        batches = source.fetch(checkpoint)
        first = next(batches, None)
        full = checkpoint is None
    except StaleCheckpointError:
        batches = source.fetch(None)
        first = next(batches, None)
        full = True
    tally.full_refetch = full and hash_list.entry_count > 0
    sweep: _Sweep | None = None
    pending: Iterator[FetchBatch] = _chain(first, batches)
    for batch in pending:
        if full and not batch.replace and sweep is None and hash_list.entry_count > 0:
            sweep = _Sweep()
        if sweep is not None:
            if batch.replace:  # a snapshot after all: it settles the list by itself
                sweep = None
                tally.apply(store, batch, batch.upserts, batch.deletes, batch.checkpoint)
            else:
                sweep.checkpoint = batch.checkpoint or sweep.checkpoint
                tally.apply(
                    store, batch, sweep.watch(batch.upserts), batch.deletes, None, synced=False
                )
            continue
        tally.apply(store, batch, batch.upserts, batch.deletes, batch.checkpoint)
    if sweep is not None:
        gone = [
            (e.hash_type, e.value)
            for e in store.list_entries(name)
            if (e.hash_type, e.value) not in sweep.seen
        ]
        # Local clean-up, not records from the source: no progress of its own.
        done = FetchBatch(pending=0, counts_reads=True)
        tally.apply(store, done, (), gone, sweep.checkpoint, synced=True)
    else:
        # Nothing more to fetch: the list is as current as the source.
        result = store.apply_batch(name, (), (), mark_synced=True)
        tally.version = result.version
    progress.finish()
    return tally.result(time.monotonic() - started, store.get_list(name).checkpoint)


def sync_lists(
    store: Store,
    names: Sequence[str] | None = None,
    *,
    credentials: Credentials | None = None,
    deadline_seconds: float | None = DEFAULT_DEADLINE_SECONDS,
    on_progress: ProgressCallback | None = None,
) -> list[SyncResult]:
    """Sync the named lists (default: every list with a source), concurrently.

    Each list gets ``deadline_seconds`` for its whole sync. A list that fails or times out
    does not stop or delay the others: its result carries ``error`` (and ``timed_out``) and
    the list keeps its previous entries. ``on_progress(done, total)`` sums every list's
    records. Unknown names raise ``ListNotFoundError`` before any sync. Results come in the
    order of ``names`` (default: the store's order).
    """
    if deadline_seconds is not None and not deadline_seconds > 0:
        raise ConfigError(
            f"a sync deadline must be a positive number of seconds, got {deadline_seconds}"
        )
    if names is None:
        targets = [hl for hl in store.lists() if hl.source_kind.synced]
    else:
        targets = [store.get_list(n) for n in names]
    if not targets:
        return []
    creds_error: ConfigError | None = None
    if credentials is None:
        try:
            credentials = Credentials.discover(_home_of(store))
        except ConfigError as exc:  # only the lists that need credentials fail on it
            credentials, creds_error = Credentials(), exc
    combined = _Combined(on_progress, len(targets))
    stop = threading.Event()
    jobs = [
        _Job(hl, credentials, creds_error, deadline_seconds, combined.for_list(i), stop)
        for i, hl in enumerate(targets)
    ]
    if len(jobs) == 1:
        return [jobs[0].run(store)]
    workers = min(len(jobs), MAX_PARALLEL_LISTS)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="uploadscan-sync") as pool:
        futures = [pool.submit(job.run_with_own_store, store.path) for job in jobs]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                error = future.exception() if future.done() else None
                if error is not None:
                    raise error
            return [f.result() for f in futures]
        except BaseException:
            # Ctrl-C, or a bug in one list: the other threads stop at their next deadline
            # check instead of running on for minutes while the process waits to exit.
            stop.set()
            raise


def sync_all(
    store: Store,
    *,
    credentials: Credentials | None = None,
    deadline_seconds: float | None = DEFAULT_DEADLINE_SECONDS,
    on_progress: ProgressCallback | None = None,
) -> list[SyncResult]:
    """``sync_lists`` over every list that has a source."""
    return sync_lists(
        store,
        None,
        credentials=credentials,
        deadline_seconds=deadline_seconds,
        on_progress=on_progress,
    )


@dataclass
class _Job:
    """One list's sync inside ``sync_lists``: failures become the result's ``error``."""

    hash_list: HashList
    credentials: Credentials
    credentials_error: ConfigError | None
    deadline_seconds: float | None
    on_progress: ProgressCallback | None
    stop: threading.Event

    def run_with_own_store(self, path: Path) -> SyncResult:
        # A connection per worker thread, closed with it: sqlite3 connections are per thread,
        # and a long-running process that syncs every few minutes must not collect them.
        started = time.monotonic()
        try:
            store = Store.open(path)
        except UploadScanError as exc:
            return self._failed(exc, started)
        with store:
            return self.run(store)

    def run(self, store: Store) -> SyncResult:
        hl = self.hash_list
        started = time.monotonic()
        scheme = (hl.source or "").partition(":")[0].strip().lower()
        if self.credentials_error is not None and scheme in _NEEDS_CREDENTIALS:
            return self._failed(self.credentials_error, started)
        try:
            with sync_deadline(None, f"list {hl.name!r}", stop=self.stop):
                return sync_list(
                    store,
                    hl.name,
                    credentials=self.credentials,
                    deadline_seconds=self.deadline_seconds,
                    on_progress=self.on_progress,
                )
        except UploadScanError as exc:
            return self._failed(exc, started)
        except OSError as exc:  # the machine (disk full, permissions), not a bug: report it
            return self._failed(exc, started)

    def _failed(self, exc: Exception, started: float) -> SyncResult:
        return SyncResult(
            self.hash_list.name,
            _safe_source(self.hash_list.source),
            seconds=time.monotonic() - started,
            error=f"{type(exc).__name__}: {exc}",
            timed_out=isinstance(exc, SyncTimeoutError),
        )


def _safe_source(uri: str | None) -> str:
    """The source URI without its query (which may name a key file or an option only)."""
    return (uri or "").partition("?")[0]


def _home_of(store: Store) -> Path:
    return store.path.parent


def _chain(first: FetchBatch | None, rest: Iterator[FetchBatch]) -> Iterator[FetchBatch]:
    if first is None:
        return
    yield first
    yield from rest


def _counted(items: Iterable[_T], read: Callable[[int], None]) -> Iterator[_T]:
    """``items`` unchanged, reporting every ``_COUNT_EVERY`` of them to ``read``."""
    n = 0
    for item in items:
        yield item
        n += 1
        if n == _COUNT_EVERY:
            read(n)
            n = 0
    read(n)


class _ListProgress:
    """One list's records read, reported (throttled) to ``on_progress``; every report is
    also a deadline check, so a batch streaming into the store stops at the deadline."""

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self._on_progress = on_progress
        self.done = 0
        self.total: int | None = None
        self._last = 0.0

    def start(self, batch: FetchBatch) -> None:
        self.total = None if batch.pending is None else self.done + batch.pending
        self._report(force=True)

    def read(self, records: int) -> None:
        check_deadline("while reading the list")
        self.done += records
        self._report()

    def finish(self) -> None:
        self.total = self.done
        self._report(force=True)

    def _report(self, *, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last >= _REPORT_INTERVAL:
            self._last = now
            # A source's estimate that falls short is no total at all.
            total = self.total if self.total is not None and self.total >= self.done else None
            self._on_progress(self.done, total)


class _Combined:
    """Sums the progress of lists synced at once into one ``on_progress(done, total)``."""

    def __init__(self, on_progress: ProgressCallback | None, count: int) -> None:
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._done = [0] * count
        self._total: list[int | None] = [None] * count

    def for_list(self, index: int) -> ProgressCallback | None:
        if self._on_progress is None:
            return None

        def report(done: int, total: int | None) -> None:
            with self._lock:
                self._done[index], self._total[index] = done, total
                known = [t for t in self._total if t is not None]
                whole = sum(known) if len(known) == len(self._total) else None
                assert self._on_progress is not None
                self._on_progress(sum(self._done), whole)

        return report


class _Sweep:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.checkpoint: str | None = None

    def watch(self, upserts: Iterable[EntryUpsert]) -> Iterator[EntryUpsert]:
        for up in upserts:
            self.seen.add((up.hash_type, up.value.strip().lower()))
            yield up


class _Tally:
    def __init__(self, name: str, source: str, progress: _ListProgress) -> None:
        self.name = name
        self.source = source
        self.progress = progress
        self.added = self.updated = self.removed = self.unchanged = self.batches = 0
        self.skipped: Counter[str] = Counter()
        self.full_refetch = False
        self.version: int | None = None

    def apply(
        self,
        store: Store,
        batch: FetchBatch,
        upserts: Iterable[EntryUpsert],
        deletes: Iterable[tuple[str, str]],
        checkpoint: str | None,
        *,
        synced: bool = False,
    ) -> None:
        check_deadline(f"before applying batch {self.batches + 1}")
        self.progress.start(batch)
        read = self.progress.read
        if batch.counts_reads:
            batch.listener = read
        else:
            if not isinstance(upserts, PackedUpserts):
                upserts = _counted(upserts, read)
            deletes = _counted(deletes, read)
        result = store.apply_batch(
            self.name,
            upserts,
            deletes,
            checkpoint=checkpoint,
            replace=batch.replace,
            mark_synced=synced,
        )
        self.batches += 1
        self.added += result.added
        self.updated += result.updated
        self.removed += result.removed
        self.unchanged += result.unchanged
        self.skipped.update(batch.skipped)
        self.version = result.version

    def result(self, seconds: float, checkpoint: str | None) -> SyncResult:
        return SyncResult(
            list_name=self.name,
            source=self.source,
            added=self.added,
            updated=self.updated,
            removed=self.removed,
            unchanged=self.unchanged,
            skipped=dict(self.skipped),
            batches=self.batches,
            full_refetch=self.full_refetch,
            checkpoint=checkpoint,
            version=self.version,
            seconds=seconds,
        )
