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
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import StaleCheckpointError, UploadScanError
from ..store._lists import EntryUpsert, HashList
from ..store._store import Store
from ._base import FetchBatch, Source
from ._credentials import Credentials
from ._uri import source_from_uri

__all__ = ["SyncResult", "sync_all", "sync_list", "sync_lists"]


@dataclass(frozen=True)
class SyncResult:
    """What one list's sync did. ``error`` is set (and nothing after the failing batch was
    applied) when ``sync_all``/``sync_lists`` caught a failure instead of raising."""

    list_name: str
    source: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    full_refetch: bool = False
    checkpoint: str | None = None
    version: int | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        return {
            "list": self.list_name,
            "source": self.source,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": dict(self.skipped),
            "batches": self.batches,
            "full_refetch": self.full_refetch,
            "version": self.version,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


def sync_list(
    store: Store,
    name: str,
    *,
    source: Source | None = None,
    credentials: Credentials | None = None,
) -> SyncResult:
    """Bring list ``name`` up to date from its configured source (or ``source``).

    Raises the source's ``SyncError`` (``FeedVerificationError``...) or the store's
    ``InvalidHashError``; batches applied before the failure stay, with their checkpoint.
    """
    started = time.monotonic()
    hash_list = store.get_list(name)
    if source is None:
        if not hash_list.source:
            return SyncResult(name, "", seconds=time.monotonic() - started)
        credentials = credentials or Credentials.discover(_home_of(store))
        source = source_from_uri(hash_list.source, credentials=credentials)
    tally = _Tally(name, source.description)
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
        tally.apply(store, FetchBatch(), (), gone, sweep.checkpoint, synced=True)
    else:
        # Nothing more to fetch: the list is as current as the source.
        result = store.apply_batch(name, (), (), mark_synced=True)
        tally.version = result.version
    return tally.result(time.monotonic() - started, store.get_list(name).checkpoint)


def sync_lists(
    store: Store,
    names: Sequence[str] | None = None,
    *,
    credentials: Credentials | None = None,
) -> list[SyncResult]:
    """Sync the named lists (default: every list with a source), one after another.

    A list that fails does not stop the others: its result carries ``error`` and the list
    keeps its previous entries. Unknown names raise ``ListNotFoundError`` before any sync.
    """
    if names is None:
        targets = [hl for hl in store.lists() if hl.source]
    else:
        targets = [store.get_list(n) for n in names]
    credentials = credentials or Credentials.discover(_home_of(store))
    results = []
    for hl in targets:
        results.append(_sync_caught(store, hl, credentials))
    return results


def sync_all(store: Store, *, credentials: Credentials | None = None) -> list[SyncResult]:
    """``sync_lists`` over every list that has a source."""
    return sync_lists(store, None, credentials=credentials)


def _sync_caught(store: Store, hl: HashList, credentials: Credentials) -> SyncResult:
    started = time.monotonic()
    try:
        return sync_list(store, hl.name, credentials=credentials)
    except UploadScanError as exc:
        return SyncResult(
            hl.name,
            _safe_source(hl.source),
            seconds=time.monotonic() - started,
            error=f"{type(exc).__name__}: {exc}",
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


class _Sweep:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.checkpoint: str | None = None

    def watch(self, upserts: Iterable[EntryUpsert]) -> Iterator[EntryUpsert]:
        for up in upserts:
            self.seen.add((up.hash_type, up.value.strip().lower()))
            yield up


class _Tally:
    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
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
