"""Back-catalogue scan: every stored file a platform already publishes, scanned like an upload.

A platform that starts using hash lists has years of content that was never checked. The job
lists the source (a directory, a file naming one path or URL per line, or an fsspec URL such as
``s3://bucket/media/``), splits it into batches, and has workers ``scan`` each file exactly as
an upload handler would (each worker process opens its own ``Scanner(audit=False)`` on the data
directory and keeps it for every batch it runs). Workers send back the verdict and the hashes
of a whole batch at once; the client is the single writer of the audit log, the
published-content record (content id = the path or URL) and the checkpoint, and writes the
last two in one transaction per second or per few hundred files, not per file.

Task size: files decode at very different speeds (a thumbnail, a 12 MP photo, a video), so
the catalogue is cut into about ``TASKS_PER_WORKER`` tasks per worker, which Dask hands out as
workers free up; few enough that per-task costs vanish, enough that the last task finishes
soon after the others.

Resumable: the checkpoint (a small SQLite file) lists the content ids already written, so a
killed job started again skips them. Every decision is audited under an id derived from
(store, content id, store version at the start of the job), and written before the checkpoint
marks it done (the record too), so work redone after a kill never records a decision twice.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._errors import ConfigError, StoreError
from .._scanner import Scanner
from .._verdict import Verdict
from ..store._audit import DecisionOrigin
from ..store._connection import ConnectionPool
from ..store._published import PUBLISHED_FILENAME, MemorySink, PublishedItem, PublishedRecord
from ..store._store import Store
from ._dask import TaskRunner, worker_cache
from ._retro import audit, batch_verdict_id, contextlib_runner

__all__ = ["BackfillItem", "BackfillResult", "Checkpoint", "backfill", "list_source"]

CHECKPOINT_DIRNAME = "batch"
#: Tasks per worker when the batch size is chosen automatically, and the most files per task.
TASKS_PER_WORKER = 8
MAX_BATCH = 32
#: The client writes the record and the checkpoint at most this many items or seconds apart.
FLUSH_ITEMS = 256
FLUSH_SECONDS = 1.0


def _is_url(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def _fsspec() -> Any:
    try:
        import fsspec  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ConfigError('URL sources need fsspec: pip install "uploadscan[dask]"') from None
    return fsspec


def list_source(source: str) -> list[str]:
    """The content ids of ``source``, sorted: files under a directory (recursively), the lines
    of a listing file (blank lines and ``#`` comments skipped), or objects under a URL."""
    if _is_url(source):
        fsspec = _fsspec()
        fs, path = fsspec.core.url_to_fs(source)
        if fs.isdir(path):
            return sorted(fs.unstrip_protocol(p) for p in fs.find(path))
        with fsspec.open(source, "rt", encoding="utf-8") as fh:
            return _listing(fh)
    path = Path(source.removeprefix("file://"))
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*") if p.is_file())
    if path.is_file():
        try:
            with path.open(encoding="utf-8") as fh:
                return _listing(fh)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the listing {path}: {exc}") from None
    raise ConfigError(f"backfill source {source!r} is neither a directory nor a listing file")


def _listing(lines: Iterable[str]) -> list[str]:
    return sorted({s for s in (line.strip() for line in lines) if s and not s.startswith("#")})


class Checkpoint:
    """Content ids a job has finished, in a small SQLite file (one writer: the client)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ConnectionPool(path, what="backfill checkpoint")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._pool.get().execute(
                "CREATE TABLE IF NOT EXISTS done (content_id TEXT PRIMARY KEY, "
                "verdict_id TEXT, action TEXT)"
            )
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(f"cannot open backfill checkpoint {path}: {exc}") from None

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._pool.get()

    def done(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT content_id FROM done")}

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM done").fetchone()[0])

    def mark(self, rows: Iterable[tuple[str, str, str]]) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany("INSERT OR REPLACE INTO done VALUES (?, ?, ?)", list(rows))
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def clear(self) -> None:
        self._conn.execute("DELETE FROM done")

    def close(self) -> None:
        self._pool.close()


def default_checkpoint(home: Path, source: str) -> Path:
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    return home / CHECKPOINT_DIRNAME / f"backfill-{digest}.sqlite3"


@dataclass(frozen=True)
class BackfillItem:
    """One scanned file: its verdict and record, or why it could not be read at all."""

    content_id: str
    verdict: Verdict | None
    record: PublishedItem | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.verdict is None:
            return {"content_id": self.content_id, "error": self.error}
        return {"content_id": self.content_id, **self.verdict.to_dict()}


@dataclass(frozen=True)
class BackfillResult:
    total: int
    skipped: int
    scanned: int
    flagged: int
    errors: int
    version: int
    seconds: float
    tasks: int = 0


# ---------------------------------------------------------------------- worker side


class _WorkerScanner:
    """A worker's scanner, recording into memory: the client is the only writer."""

    def __init__(self, home: str, options: Mapping[str, Any]) -> None:
        self.sink = MemorySink()
        self.scanner = Scanner(Path(home), audit=False, published=self.sink, **options)

    def close(self) -> None:
        self.scanner.close()


def _scan_task(home: str, paths: list[str], options: dict[str, Any]) -> list[BackfillItem]:
    """Scan ``paths`` in a worker process; nothing is written here."""
    key = f"scanner:{home}:{sorted(options.items())}"
    worker: _WorkerScanner = worker_cache(key, lambda: _WorkerScanner(home, options))
    scanner, sink = worker.scanner, worker.sink
    out = []
    for path in paths:
        sink.take()
        try:
            if _is_url(path):
                with _fsspec().open(path, "rb") as fh:
                    verdict = scanner.scan(fh, content_id=path)
            else:
                verdict = scanner.scan(path.removeprefix("file://"), content_id=path)
        except OSError as exc:
            out.append(BackfillItem(path, None, None, f"cannot read {path}: {exc}"))
            continue
        records = sink.take()
        out.append(BackfillItem(path, verdict, records[0] if records else None))
    return out


# ---------------------------------------------------------------------- client side


class _Writer:
    """The client's writes, batched: audit rows, then the record, then the checkpoint.

    Results are flushed every ``FLUSH_ITEMS`` items or ``FLUSH_SECONDS`` seconds, whichever
    comes first, as one record transaction and one checkpoint transaction. The order keeps a
    kill at any moment safe: a file is marked done only after its decision and record are
    written, and a file redone after a kill finds its decision already there (same id).
    """

    def __init__(
        self,
        store: Store,
        marks: Checkpoint,
        published: PublishedRecord | None,
        version: int,
        record_audit: bool,
    ) -> None:
        self._store = store
        self._marks = marks
        self._published = published
        self._version = version
        self._record_audit = record_audit
        self._records: list[PublishedItem] = []
        self._done: list[tuple[str, str, str]] = []
        self._last_flush = time.monotonic()

    def add(self, item: BackfillItem) -> BackfillItem:
        """Audit ``item`` (under its batch id) and queue its record and checkpoint row."""
        if item.verdict is None:
            return item
        verdict_id = batch_verdict_id(self._store, "backfill", item.content_id, self._version)
        verdict = replace(item.verdict, id=verdict_id)
        if self._record_audit:
            sha = item.record.sha256 if item.record is not None else None
            audit(self._store, verdict, sha, DecisionOrigin.BACKFILL)
        if item.record is not None:
            self._records.append(item.record)
        self._done.append((item.content_id, verdict_id, verdict.action.value))
        return replace(item, verdict=verdict)

    def due(self) -> bool:
        return len(self._done) >= FLUSH_ITEMS or (
            bool(self._done) and time.monotonic() - self._last_flush >= FLUSH_SECONDS
        )

    def flush(self) -> None:
        if self._published is not None and self._records:
            self._published.add_many(self._records)
        if self._done:
            self._marks.mark(self._done)
        self._records, self._done = [], []
        self._last_flush = time.monotonic()


def task_size(todo: int, workers: int, batch_size: int | None) -> int:
    """Files per task: ``batch_size`` if given, else enough tasks for ``TASKS_PER_WORKER`` per
    worker (so a slow file at the end leaves the others little to wait for) but no more than
    ``MAX_BATCH`` files per task (so results and progress keep flowing)."""
    if batch_size is not None:
        return batch_size
    return max(1, min(MAX_BATCH, -(-todo // (max(1, workers) * TASKS_PER_WORKER))))


def backfill(
    scanner: Scanner,
    source: str,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    restart: bool = False,
    batch_size: int | None = None,
    scheduler: str | None = None,
    workers: int | None = 0,
    runner: TaskRunner | None = None,
    record: bool = True,
    record_audit: bool = True,
    options: Mapping[str, Any] | None = None,
    on_item: Callable[[BackfillItem], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BackfillResult:
    """Scan every file of ``source`` not yet in the checkpoint; see the module docstring.

    ``workers=0`` (the default) scans in this process; ``workers=N`` on a ``LocalCluster``;
    ``scheduler`` on an existing Dask cluster whose workers see the data directory at the
    same path. ``options`` are ``Scanner`` keyword arguments for the workers (``fail_mode``,
    ``dihedral``...). ``restart`` forgets the checkpoint first. ``batch_size`` files go to a
    worker per task (default: sized from the catalogue and the number of workers).
    ``on_progress(done, total)`` counts files.
    """
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    started = time.monotonic()
    store = scanner.store
    home = scanner.home
    paths = list_source(source)
    marks = Checkpoint(Path(checkpoint) if checkpoint else default_checkpoint(home, source))
    published = PublishedRecord.open(home / PUBLISHED_FILENAME) if record else None
    scanned = flagged = errors = processed = 0
    try:
        if restart:
            marks.clear()
        finished = marks.done()
        todo = [p for p in paths if p not in finished]
        version = store.version()
        writer = _Writer(store, marks, published, version, record_audit)
        batches: list[list[str]] = []
        if todo:
            with contextlib_runner(runner, scheduler, workers) as active:
                size = task_size(len(todo), active.workers, batch_size)
                batches = [todo[i : i + size] for i in range(0, len(todo), size)]
                args = [(str(home), batch, dict(options or {})) for batch in batches]
                name = f"backfill-{uuid.uuid4().hex[:8]}"
                try:
                    for _, items in active.map_unordered(_scan_task, args, name=name):
                        for item in items:
                            item = writer.add(item)
                            processed += 1
                            if item.verdict is None:
                                errors += 1
                            else:
                                scanned += 1
                                flagged += int(not item.verdict.allowed)
                                errors += int(bool(item.verdict.errors))
                            if on_item is not None:
                                on_item(item)
                        if writer.due():
                            writer.flush()
                        if on_progress is not None:
                            on_progress(processed, len(todo))
                finally:
                    writer.flush()
        return BackfillResult(
            total=len(paths),
            skipped=len(paths) - len(todo),
            scanned=scanned,
            flagged=flagged,
            errors=errors,
            version=version,
            seconds=time.monotonic() - started,
            tasks=len(batches),
        )
    finally:
        marks.close()
        if published is not None:
            published.close()
