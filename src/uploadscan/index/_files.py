"""Index files: batch lookups against the store, through files derived from it and kept in sync.

The store is the truth; index files are a cache of it at some store version. For each hash type
the matcher serves one *base* index file (built at version ``b``) plus a small in-memory *delta*
(entries added since ``b``, searched by brute force, and ids removed since ``b``, filtered out),
which together answer exactly as the store reads at the version being served. Rebuilding the
base costs seconds at a million entries, so it only happens when the delta grows past a few
percent; a 10k-entry update is visible after one cheap ``changes()`` query.

Many worker processes share one index directory:

- ``manifest.json`` names the current base file of each type, its version and the store it was
  built from; it is replaced atomically, and base files are never modified once named (a new
  version gets a new file name), so a reader always maps a complete file.
- Only one process builds at a time (``flock`` on ``build.lock``); the others keep serving what
  they have and pick the new manifest up on their next refresh.
- Superseded files are deleted after a grace period. On POSIX an unlinked file stays valid for
  every process that already mapped it, so the grace only covers processes that have read the
  old manifest but not yet opened the file.
- A state (version + per-type base and delta) is built completely and then swapped in with one
  reference assignment, so a lookup in flight never sees half of an update.

Each hash type declares its index kind (``IndexKind``): ``HAMMING`` types (PDQ, the 64-bit
imagehash types) get a ``HammingIndex``, ``DIGEST`` types (MD5, SHA-256) a ``DigestSet`` hash
table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .._errors import (
    ConfigError,
    DeltaUnavailableError,
    IndexFileError,
    InvalidHashError,
    UploadScanError,
)
from ..hashing._protocol import HashType, IndexKind
from ..hashing._registry import registry
from ..store._store import Store
from ._digestset import DigestSet
from ._hamming import HammingIndex, SearchHits, brute_force_search
from ._vectors import VectorIndex

__all__ = ["IndexFiles"]

MANIFEST_NAME = "manifest.json"
LOCK_NAME = "build.lock"
_MANIFEST_FORMAT = 1
_FILE_RE = re.compile(r"[a-z][a-z0-9_]*\.v[0-9]+\.idx")
# Rebuild the base once the delta exceeds this many entries, or this fraction of the base
# (but never for fewer than _MIN_REBUILD changes: small bases would churn files otherwise).
_MAX_DELTA = 50_000
_DELTA_FRACTION = 0.05
_MIN_REBUILD = 1_024
#: Vector types keep their delta's values in memory (a TMK value is ~260 KB): rebuild sooner.
_MIN_REBUILD_VECTOR = 32
_NO_CODES = np.empty((0, 0), np.uint8)

#: ``on_progress(done, total)``: entries indexed so far, of how many.
Progress = Callable[[int, int], None]
GRACE_SECONDS = 60.0


class _Base(Protocol):
    def search(self, queries: npt.NDArray[np.uint8], max_distance: int) -> SearchHits: ...

    def verify(self) -> None: ...

    def __len__(self) -> int: ...


class _DigestBase:
    """``DigestSet`` behind the same ``search`` interface as ``HammingIndex`` (distance 0)."""

    def __init__(self, digests: DigestSet) -> None:
        self._set = digests

    def search(self, queries: npt.NDArray[np.uint8], max_distance: int) -> SearchHits:
        query, ids = self._set.lookup(queries)
        query = np.asarray(query, dtype=np.int32)
        return SearchHits(query, np.asarray(ids, dtype=np.int64), np.zeros_like(query))

    def verify(self) -> None:
        self._set.verify()

    def __len__(self) -> int:
        return len(self._set)


_FILE_KINDS = {
    IndexKind.HAMMING: "hamming",
    IndexKind.DIGEST: "digestset",
    IndexKind.VECTOR: "vector",
}


def _index_kind(hash_type: str) -> str:
    return _FILE_KINDS[registry.get(hash_type).index_kind]


def _build_file(
    kind: str, codes: npt.NDArray[np.uint8], ids: npt.NDArray[np.int64], path: Path
) -> None:
    if kind == "digestset":
        DigestSet.build(codes, ids, path)
    else:
        HammingIndex.build(codes, ids, path)


def _open_file(kind: str, path: Path, hash_type: str | None = None) -> _Base:
    if kind == "digestset":
        return _DigestBase(DigestSet.open(path))
    if kind == "hamming":
        return HammingIndex.open(path)
    if kind == "vector" and hash_type is not None and hash_type in registry:
        return _VectorBase(VectorIndex.open(registry.get(hash_type), path))
    raise IndexFileError(f"index file {path} has unknown kind {kind!r}")


class _VectorBase:
    """A ``VectorIndex`` file in the state of a vector type (searched by the type itself)."""

    def __init__(self, index: VectorIndex) -> None:
        self.index = index

    def search(self, queries: npt.NDArray[np.uint8], max_distance: int) -> SearchHits:
        raise IndexFileError("a vector index is searched with search_values")

    def verify(self) -> None:
        self.index.verify()

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True, slots=True)
class ValueHit:
    """A vector type's match: which query value, which entry, how close, and why."""

    query: int
    entry_id: int
    measure: float
    evidence: Mapping[str, float | int | str]


@dataclass(frozen=True)
class _TypeState:
    """One hash type at one version: base file plus delta."""

    base: _Base | None
    base_file: str | None
    base_version: int
    added_ids: npt.NDArray[np.int64]
    added_codes: npt.NDArray[np.uint8]
    removed_ids: npt.NDArray[np.int64]  # sorted
    exact: dict[bytes, list[int]] | None = None  # added entries by value, for exact types
    added_vectors: VectorIndex | None = None  # added entries of a vector type, searched exactly

    def search_added(self, queries: npt.NDArray[np.uint8], max_distance: int) -> SearchHits:
        if self.exact is None:
            return brute_force_search(self.added_codes, self.added_ids, queries, max_distance)
        rows, ids = [], []
        for row, query in enumerate(queries):
            for entry_id in self.exact.get(query.tobytes(), ()):
                rows.append(row)
                ids.append(entry_id)
        query_rows = np.asarray(rows, dtype=np.int32)
        return SearchHits(query_rows, np.asarray(ids, dtype=np.int64), np.zeros_like(query_rows))

    @property
    def delta_size(self) -> int:
        return int(self.added_ids.shape[0] + self.removed_ids.shape[0])

    def needs_build(self) -> bool:
        if self.base is None:
            return bool(self.added_ids.shape[0] > 0)
        smallest = _MIN_REBUILD_VECTOR if self.added_vectors is not None else _MIN_REBUILD
        limit = max(smallest, min(_MAX_DELTA, _DELTA_FRACTION * len(self.base)))
        return self.delta_size > limit


@dataclass(frozen=True)
class _State:
    version: int
    manifest_stat: tuple[int, int, int] | None
    types: dict[str, _TypeState] = field(default_factory=dict)


class IndexFiles:
    """Exact lookups over every list in ``store``, via index files in ``index_dir``.

    ``refresh()`` brings the served state up to the store's version, building base files when
    needed. ``search()`` also checks for changes at most every ``refresh_interval`` seconds
    (``None``: never), cheaply and without building, so a long-running worker picks up other
    processes' syncs on its own. Thread-safe.
    """

    def __init__(
        self, store: Store, index_dir: Path | str, *, refresh_interval: float | None = 0.2
    ) -> None:
        self._store = store
        self._dir = Path(index_dir)
        self._refresh_interval = refresh_interval
        self._refresh_lock = threading.Lock()
        self._state: _State | None = None
        self._last_check = 0.0
        self._opened: dict[str, _Base] = {}  # file name -> open base, for the current state
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create index directory {self._dir}: {exc}") from None

    @property
    def version(self) -> int:
        """The store version being served (-1 before the first refresh)."""
        state = self._state
        return -1 if state is None else state.version

    @property
    def index_dir(self) -> Path:
        return self._dir

    def refresh(self, *, build: bool = True, on_progress: Progress | None = None) -> int:
        """Serve the store's current version; returns it.

        With ``build`` (the default) a missing, damaged or too-far-behind base index is rebuilt
        from the store, waiting if another process is building; ``on_progress(done, total)``
        then counts the entries indexed (a first build of millions of entries takes seconds).
        Without it the delta simply grows, which is always exact, only slower to search.
        """
        with self._refresh_lock:
            return self._refresh_locked(build, on_progress)

    def _refresh_locked(self, build: bool, on_progress: Progress | None = None) -> int:
        state = self._load()
        if build:
            stale = sorted(ht for ht, ts in state.types.items() if ts.needs_build())
            if stale:
                self._build(stale, on_progress)
                state = self._load()
        self._opened = {
            ts.base_file: ts.base
            for ts in state.types.values()
            if ts.base is not None and ts.base_file is not None
        }
        self._state = state
        self._last_check = time.monotonic()
        return state.version

    def view(self) -> IndexView:
        """The state served now, pinned: searches through it all answer from one store
        version (``view.version``) even if a newer one is swapped in meanwhile."""
        return IndexView(self, self._current_state())

    def search(
        self,
        hash_type: str,
        codes: npt.NDArray[np.uint8],
        max_distance: int,
        *,
        _state: _State | None = None,
    ) -> SearchHits:
        """Every live entry of ``hash_type`` within ``max_distance`` bits of each query row.

        ``codes`` is (q, nbytes) uint8. Exact types only accept ``max_distance == 0``. All
        hits come from one store version (``self.version`` at the time of the call); use
        ``view()`` to keep several searches on one version.
        """
        ht = registry.get(hash_type)
        queries = np.asarray(codes)
        nbytes = ht.code_bytes
        if queries.dtype != np.uint8 or queries.ndim != 2 or queries.shape[1] != nbytes:
            raise InvalidHashError(
                f"{hash_type} queries must be a (q, {nbytes}) uint8 array, got "
                f"{queries.dtype} {queries.shape}"
            )
        if isinstance(max_distance, bool) or not isinstance(max_distance, int | np.integer):
            raise ConfigError(f"max_distance must be an integer, got {max_distance!r}")
        if ht.is_exact and max_distance != 0:
            raise ConfigError(f"{hash_type} matches exactly; max_distance must be 0")
        if not 0 <= max_distance <= ht.bits:
            raise ConfigError(f"max_distance must be in [0, {ht.bits}], got {max_distance}")
        state = _state if _state is not None else self._current_state()
        ts = state.types.get(hash_type)
        if ts is None or queries.shape[0] == 0:
            return _empty_hits()
        parts = []
        if ts.base is not None:
            hits = ts.base.search(queries, int(max_distance))
            if ts.removed_ids.shape[0] and len(hits):
                keep = ~np.isin(hits.ids, ts.removed_ids, assume_unique=False)
                hits = SearchHits(hits.query[keep], hits.ids[keep], hits.distance[keep])
            parts.append(hits)
        if ts.added_ids.shape[0]:
            parts.append(ts.search_added(queries, int(max_distance)))
        return _merge(parts)

    def search_values(
        self,
        hash_type: str,
        queries: Sequence[str],
        shortlist: float,
        *,
        _state: _State | None = None,
    ) -> list[ValueHit]:
        """Every live entry of a ``VECTOR`` type that the type's own search confirms for one of
        ``queries`` (canonical values), shortlisting at ``shortlist``."""
        ht = registry.get(hash_type)
        if ht.index_kind is not IndexKind.VECTOR:
            raise ConfigError(f"{hash_type} is not a vector hash type")
        state = _state if _state is not None else self._current_state()
        ts = state.types.get(hash_type)
        if ts is None or not queries:
            return []
        out: list[ValueHit] = []
        sources: list[tuple[VectorIndex, npt.NDArray[np.int64]]] = []
        if isinstance(ts.base, _VectorBase):
            sources.append((ts.base.index, ts.removed_ids))
        if ts.added_vectors is not None:
            sources.append((ts.added_vectors, np.empty(0, np.int64)))
        for index, removed in sources:
            for number, query in enumerate(queries):
                for hit in ht.search(index, query, shortlist):
                    entry_id = int(index.ids[hit.row])
                    if removed.shape[0] and np.isin(entry_id, removed):
                        continue
                    out.append(ValueHit(number, entry_id, hit.measure, hit.evidence))
        return out

    def _current_state(self) -> _State:
        state = self._state
        if state is None:
            self.refresh()
            state = self._state
            assert state is not None
            return state
        interval = self._refresh_interval
        if interval is not None and time.monotonic() - self._last_check >= interval:
            if self._refresh_lock.acquire(blocking=False):
                try:
                    if time.monotonic() - self._last_check >= interval:
                        self._refresh_locked(build=False)
                finally:
                    self._refresh_lock.release()
            state = self._state
            assert state is not None
        return state

    # ------------------------------------------------------------------ loading

    def _load(self) -> _State:
        """Read the manifest, then the store version, and assemble base + delta per type."""
        manifest, mstat = self._read_manifest()
        version = self._store.version()
        old = self._state
        if old is not None and old.version == version and old.manifest_stat == mstat:
            return old
        if manifest.get("store_id") != self._store.store_id:
            manifest = {}
        entries: dict[str, Any] = manifest.get("types", {})
        names = set(self._store.hash_types()) | set(entries)
        if old is not None:
            names |= set(old.types)
        types = {}
        for name in sorted(names):
            if name not in registry:
                continue  # a plug-in type no longer installed: nothing can query it
            types[name] = self._load_type(name, entries.get(name), version)
        return _State(version, mstat, types)

    def _load_type(self, hash_type: str, entry: Any, version: int) -> _TypeState:
        ht = registry.get(hash_type)
        if ht.index_kind is IndexKind.VECTOR:
            return self._load_vector_type(ht, entry, version)
        state = self._load_type_arrays(hash_type, entry, version)
        if registry.get(hash_type).is_exact and state.added_ids.shape[0]:
            exact: dict[bytes, list[int]] = {}
            for entry_id, code in zip(state.added_ids.tolist(), state.added_codes, strict=True):
                exact.setdefault(code.tobytes(), []).append(entry_id)
            state = dataclasses.replace(state, exact=exact)
        return state

    def _load_type_arrays(self, hash_type: str, entry: Any, version: int) -> _TypeState:
        base, base_file, base_version = self._open_base(hash_type, entry, version)
        if base is not None:
            try:
                added, codes, removed = self._store.changes(hash_type, base_version, version)
                return _TypeState(base, base_file, base_version, added, codes, np.sort(removed))
            except DeltaUnavailableError:
                pass
        ids, codes = self._store.snapshot(hash_type, version)
        return _TypeState(None, None, version, ids, codes, np.empty(0, np.int64))

    def _load_vector_type(self, ht: HashType, entry: Any, version: int) -> _TypeState:
        base, base_file, base_version = self._open_base(ht.name, entry, version)
        if base is not None:
            try:
                added, values, removed = self._store.changes_values(ht.name, base_version, version)
                delta = VectorIndex.in_memory(ht, added, values) if values else None
                return _TypeState(
                    base, base_file, base_version, added, _NO_CODES, np.sort(removed), None, delta
                )
            except DeltaUnavailableError:
                pass
        ids, values = self._store.snapshot_values(ht.name, version)
        delta = VectorIndex.in_memory(ht, ids, values) if values else None
        return _TypeState(None, None, version, ids, _NO_CODES, np.empty(0, np.int64), None, delta)

    def _open_base(
        self, hash_type: str, entry: Any, version: int
    ) -> tuple[_Base | None, str | None, int]:
        """The base file the manifest names for ``hash_type``, if it opens and agrees."""
        if not isinstance(entry, dict):
            return None, None, 0
        try:
            base_file = str(entry["file"])
            base_version = int(entry["version"])
            if not _FILE_RE.fullmatch(base_file) or base_version > version:
                raise IndexFileError(f"manifest entry for {hash_type} is not valid")
            base = self._opened.get(base_file)
            if base is None:
                base = _open_file(str(entry["kind"]), self._dir / base_file, hash_type)
            if len(base) != int(entry["count"]):
                raise IndexFileError(f"index file {base_file} does not match the manifest")
        except (UploadScanError, OSError, KeyError, TypeError, ValueError):
            return None, None, 0
        return base, base_file, base_version

    def _read_manifest(self) -> tuple[dict[str, Any], tuple[int, int, int] | None]:
        path = self._dir / MANIFEST_NAME
        try:
            with path.open("rb") as f:
                st = os.fstat(f.fileno())
                data = json.loads(f.read())
        except (OSError, ValueError):
            return {}, None
        stat = (st.st_ino, st.st_mtime_ns, st.st_size)
        if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
            return {}, stat
        return data, stat

    # ------------------------------------------------------------------ building

    def _build(self, hash_types: list[str], on_progress: Progress | None = None) -> None:
        """Rebuild the base files of ``hash_types`` at the current version, under the lock."""
        total = sum(self._store.count(name) for name in hash_types)
        done = 0
        if on_progress is not None:
            on_progress(0, total)
        with self._build_lock():
            manifest, _ = self._read_manifest()
            if manifest.get("store_id") != self._store.store_id:
                manifest = {"types": {}, "retired": {}}
            types: dict[str, Any] = dict(manifest.get("types", {}))
            retired: dict[str, float] = dict(manifest.get("retired", {}))
            version = self._store.version()
            now = time.time()
            changed = False
            for name in hash_types:
                current = self._load_type(name, types.get(name), version)
                if not current.needs_build():
                    continue  # another process built it while we waited for the lock
                kind = _index_kind(name)
                file_name = f"{name}.v{version}.idx"
                if kind == "vector":
                    ids, values = self._store.snapshot_values(name, version)
                    VectorIndex.build(registry.get(name), ids, values, self._dir / file_name)
                else:
                    ids, codes = self._store.snapshot(name, version)
                    _build_file(kind, codes, ids, self._dir / file_name)
                old = types.get(name)
                if isinstance(old, dict) and old.get("file") not in (None, file_name):
                    retired[str(old["file"])] = now
                types[name] = {
                    "file": file_name,
                    "kind": kind,
                    "version": version,
                    "count": int(ids.shape[0]),
                    "built": now,
                }
                changed = True
                done += int(ids.shape[0])
                if on_progress is not None:
                    on_progress(min(done, total), total)
            if changed:
                self._write_manifest(
                    {
                        "format": _MANIFEST_FORMAT,
                        "store_id": self._store.store_id,
                        "types": types,
                        "retired": self._collect(types, retired, now),
                    }
                )

    @contextlib.contextmanager
    def _build_lock(self) -> Iterator[None]:
        fd = os.open(self._dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _collect(
        self, types: dict[str, Any], retired: dict[str, float], now: float
    ) -> dict[str, float]:
        """Delete superseded files past the grace period; returns those still waiting."""
        live = {str(e.get("file")) for e in types.values() if isinstance(e, dict)}
        waiting = {}
        for path in self._dir.iterdir():
            name = path.name
            if name in live or not _FILE_RE.fullmatch(name):
                continue
            since = retired.get(name, now)
            if now - since >= GRACE_SECONDS:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                waiting[name] = since
        return waiting

    def _write_manifest(self, data: dict[str, Any]) -> None:
        path = self._dir / MANIFEST_NAME
        tmp = path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self._dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _empty_hits() -> SearchHits:
    return SearchHits(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int32))


def _merge(parts: list[SearchHits]) -> SearchHits:
    """Concatenate hits and order them by query, distance, id (deterministic output)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty_hits()
    if len(parts) == 1:
        hits = parts[0]
    else:
        hits = SearchHits(
            np.concatenate([p.query for p in parts]).astype(np.int32),
            np.concatenate([p.ids for p in parts]).astype(np.int64),
            np.concatenate([p.distance for p in parts]).astype(np.int32),
        )
    order = np.lexsort((hits.ids, hits.distance, hits.query))
    return SearchHits(hits.query[order], hits.ids[order], hits.distance[order])


@dataclass(frozen=True)
class IndexView:
    """One served version of the matcher's indexes (see ``IndexFiles.view``)."""

    matcher: IndexFiles
    state: _State

    @property
    def version(self) -> int:
        return self.state.version

    def search(self, hash_type: str, codes: npt.NDArray[np.uint8], max_distance: int) -> SearchHits:
        return self.matcher.search(hash_type, codes, max_distance, _state=self.state)

    def search_values(
        self, hash_type: str, queries: Sequence[str], shortlist: float
    ) -> list[ValueHit]:
        return self.matcher.search_values(hash_type, queries, shortlist, _state=self.state)


def check_index_files(store: Store, index_dir: Path) -> list[str]:
    """Problems with the index files of ``store`` in ``index_dir`` (reads every file)."""
    findings: list[str] = []
    manifest_path = index_dir / MANIFEST_NAME
    store_types = set(store.hash_types())
    if not manifest_path.exists():
        if store_types:
            findings.append(f"{manifest_path} is missing")
        return findings
    try:
        manifest = json.loads(manifest_path.read_bytes())
        types = manifest["types"]
        if manifest.get("format") != 1 or not isinstance(types, dict):
            raise ValueError("unknown format")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        findings.append(f"{manifest_path} is damaged ({exc})")
        return findings
    if manifest.get("store_id") != store.store_id:
        findings.append(f"{manifest_path} was built from another store")
        return findings
    version = store.version()
    for hash_type in sorted(store_types - set(types)):
        findings.append(f"no index file for {hash_type} in {manifest_path}")
    for hash_type, entry in sorted(types.items()):
        problem = _check_index_file(index_dir, hash_type, entry, version)
        if problem is not None:
            findings.append(problem)
    return findings


def _check_index_file(index_dir: Path, hash_type: str, entry: Any, version: int) -> str | None:
    try:
        name, kind = str(entry["file"]), str(entry["kind"])
        count, built_at = int(entry["count"]), int(entry["version"])
    except (KeyError, TypeError, ValueError):
        return f"manifest entry for {hash_type} is damaged"
    if not _FILE_RE.fullmatch(name):
        return f"manifest entry for {hash_type} names an unsafe file {name!r}"
    if built_at > version:
        return f"index file {name} claims store version {built_at}, newer than the store's"
    try:
        base = _open_file(kind, index_dir / name)
        base.verify()
        length = len(base)
    except (IndexFileError, OSError, ValueError) as exc:
        return str(exc)
    if length != count:
        return f"index file {name} holds {length} entries, the manifest says {count}"
    return None


def rebuild_index_files(store: Store, index_dir: Path) -> None:
    """Delete the manifest and every index file it names (damaged or not, they are derived),
    then rebuild from the store under the build lock."""
    manifest_path = index_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_bytes())
        names = [str(e["file"]) for e in manifest["types"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        names = []
    for name in names:
        if _FILE_RE.fullmatch(name):
            (index_dir / name).unlink(missing_ok=True)
    manifest_path.unlink(missing_ok=True)
    IndexFiles(store, index_dir, refresh_interval=None).refresh(build=True)
