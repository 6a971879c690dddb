"""Running batch work on Dask: an existing cluster, or a ``LocalCluster`` of worker processes.

The jobs (``_retro``, ``_backfill``) are written against ``TaskRunner``: put a value on every
worker once (``share``), run a plain top-level function over a list of argument tuples and get
results back as they complete (``map_unordered``). Two implementations:

- ``DaskRunner``: ``client.submit`` per task with a key that names the job and the shard, so
  a resubmitted job reuses nothing stale and Dask retries a failed task (``retries``) on any
  worker, which is safe because every task is a pure function of its shard. Results come back
  to the client, which is the only writer of the audit log and the record.
- ``InlineRunner``: the same calls in this process, for small catalogues, tests and platforms
  without Dask installed (``--workers 0``).

Nothing here imports dask at module import time; ``open_runner`` does, and names the extra to
install when it is missing. Worker processes keep expensive per-process state (an open
``Scanner``, a built delta index) in ``worker_cache`` so each is built once per worker, not
once per task.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from .._errors import ConfigError

__all__ = ["DaskRunner", "InlineRunner", "TaskRunner", "open_runner", "worker_cache"]

DEFAULT_RETRIES = 2

_cache: dict[str, Any] = {}
_cache_lock = threading.Lock()


def worker_cache(key: str, factory: Callable[[], Any], *, keep: int = 4) -> Any:
    """A per-process value built once by ``factory`` (at most ``keep`` kept, oldest dropped)."""
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        value = factory()
        _cache[key] = value
        while len(_cache) > keep:
            old = _cache.pop(next(iter(_cache)))
            close = getattr(old, "close", None)
            if callable(close):
                close()
        return value


class TaskRunner(Protocol):
    def share(self, value: Any) -> Any:
        """Make ``value`` available to every task (pass the result as an argument)."""
        ...

    def map_unordered(
        self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], *, name: str
    ) -> Iterator[tuple[int, Any]]:
        """``(index, fn(*args[index]))`` for every index, in completion order."""
        ...

    @property
    def workers(self) -> int: ...


class InlineRunner:
    """Runs tasks in this process, in order."""

    workers = 1

    def share(self, value: Any) -> Any:
        return value

    def map_unordered(
        self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], *, name: str
    ) -> Iterator[tuple[int, Any]]:
        for index, item in enumerate(args):
            yield index, fn(*item)


class DaskRunner:
    """Runs tasks on a ``distributed.Client``'s cluster, retrying failed tasks."""

    def __init__(self, client: Any, *, retries: int = DEFAULT_RETRIES) -> None:
        self._client = client
        self._retries = retries

    @property
    def client(self) -> Any:
        return self._client

    @property
    def workers(self) -> int:
        info = self._client.scheduler_info()
        return max(1, len(info.get("workers", {})))

    def share(self, value: Any) -> Any:
        return self._client.scatter(value, broadcast=True, hash=False)

    def map_unordered(
        self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], *, name: str
    ) -> Iterator[tuple[int, Any]]:
        as_completed = _distributed().as_completed

        futures = []
        index_of: dict[str, int] = {}
        for index, item in enumerate(args):
            future = self._client.submit(
                fn, *item, key=f"{name}-{index}", retries=self._retries, pure=False
            )
            futures.append(future)
            index_of[future.key] = index
        pending = as_completed(futures, with_results=True)
        del futures  # completed results are dropped once handed over
        try:
            for future, result in pending:
                yield index_of[future.key], result
        finally:
            pending.clear()


def _distributed() -> Any:
    """``dask.distributed``, imported on first use (untyped, hence ``Any``)."""
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise ConfigError(
            'running on Dask needs dask.distributed: pip install "uploadscan[dask]" '
            "(or use --workers 0 to run in this process)"
        ) from None


@contextlib.contextmanager
def open_runner(
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    retries: int = DEFAULT_RETRIES,
) -> Iterator[TaskRunner]:
    """A runner for one job.

    ``scheduler`` (an address such as ``tcp://10.0.0.5:8786``) connects to an existing Dask
    cluster; otherwise ``workers`` worker processes (default: one per CPU) are started on this
    machine in a ``LocalCluster`` and stopped afterwards; ``workers=0`` runs inline without
    Dask.
    """
    if workers is not None and workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    if scheduler is None and workers == 0:
        yield InlineRunner()
        return
    distributed = _distributed()
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
    if scheduler is not None:
        with Client(scheduler) as client:
            yield DaskRunner(client, retries=retries)
        return
    count = workers if workers is not None else max(1, os.cpu_count() or 1)
    with (
        LocalCluster(
            n_workers=count,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: jobs side by side must not collide
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield DaskRunner(client, retries=retries)
