"""A small self-describing container for derived index files: typed arrays behind one header.

Index files are rebuilt from the SQLite store and then read by many worker processes at once, so
the format is built for two things. Opening must be cheap and shared: each array is a plain
little-endian section at a 64-byte aligned offset that is memory-mapped, never parsed, so every
process shares the page cache and opening a large index costs a header read. And damage must be
noticed instead of crashing a worker: the header carries a magic, a format version, the expected
file size and a CRC-32 of itself, and every section's CRC-32 is recorded for a full ``verify()``
(not done on open, because reading every page of a large index would defeat the mapping).

Layout::

    0   magic b"USCANIDX"
    8   container version   u32
    12  header length       u32   (bytes of JSON that follow)
    16  header CRC-32       u32
    20  reserved            u32
    24  JSON header (kind, kind version, parameters, sections), padded with spaces
    ... sections, each at a 64-byte aligned offset

Files are written to a temporary file in the target directory, fsync'd and renamed over the
target, so readers see either the old or the new file, never a partial one; a reader that mapped
the old file keeps a valid mapping after the rename.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from uploadscan._errors import IndexFileError

MAGIC = b"USCANIDX"
CONTAINER_VERSION = 1
_PREFIX = struct.Struct("<8sIIII")
_ALIGN = 64
_MAX_HEADER = 1 << 20
_DTYPES = frozenset({"|u1", "<u2", "<u4", "<u8", "<i4", "<i8"})


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """One array of the file: its name, numpy dtype string (from ``_DTYPES``) and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def _bytes_of(array: npt.NDArray[Any]) -> memoryview:
    """The raw bytes of an array, without a copy when it is already contiguous."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _align(value: int) -> int:
    return (value + _ALIGN - 1) // _ALIGN * _ALIGN


class SectionWriter:
    """Writes a container file section by section; the file appears only on ``commit()``.

    Sections may be filled in any interleaving, but each one front to back (``append``), so its
    CRC can be computed on the way without holding the whole array in memory.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        kind: str,
        version: int,
        params: dict[str, Any],
        specs: list[SectionSpec],
    ) -> None:
        for spec in specs:
            if spec.dtype not in _DTYPES:
                raise ValueError(f"unsupported section dtype {spec.dtype!r}")
        self.path = Path(path)
        self._kind, self._version, self._params = kind, version, params
        self._specs = {spec.name: spec for spec in specs}
        self._crc = dict.fromkeys(self._specs, 0)
        self._written = dict.fromkeys(self._specs, 0)
        # Placeholder CRCs have the maximum width, so the real header is never longer.
        probe = self._header_bytes({name: 0xFFFFFFFF for name in self._specs}, {}, 1 << 62)
        offset = _align(_PREFIX.size + len(probe) + 4096)
        self._offsets: dict[str, int] = {}
        for spec in specs:
            self._offsets[spec.name] = offset
            offset = _align(offset + spec.nbytes)
        self._size = offset
        self._header_room = self._offsets[specs[0].name] - _PREFIX.size if specs else len(probe)
        self._size = max(self._size, _PREFIX.size + self._header_room)
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        self._fd, self._tmp = fd, tmp
        try:
            os.fchmod(fd, 0o644)
            os.ftruncate(fd, self._size)
        except BaseException:
            self.abort()
            raise

    def _header_bytes(self, crcs: dict[str, int], offsets: dict[str, int], size: int) -> bytes:
        sections = [
            {
                "name": spec.name,
                "dtype": spec.dtype,
                "shape": list(spec.shape),
                "offset": offsets.get(spec.name, size),
                "nbytes": spec.nbytes,
                "crc32": crcs[spec.name],
            }
            for spec in self._specs.values()
        ]
        header = {
            "kind": self._kind,
            "version": self._version,
            "params": self._params,
            "file_size": size,
            "sections": sections,
        }
        return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()

    def append(self, name: str, array: npt.NDArray[Any]) -> None:
        """Write the next rows of section ``name`` (any shape; bytes are taken in C order)."""
        spec = self._specs[name]
        data = np.ascontiguousarray(array, dtype=np.dtype(spec.dtype))
        view = _bytes_of(data)
        start = self._written[name]
        if start + len(view) > spec.nbytes:
            raise ValueError(f"section {name!r} overflows its declared shape {spec.shape}")
        position = self._offsets[name] + start
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], position + done)
        self._crc[name] = zlib.crc32(view, self._crc[name])
        self._written[name] = start + len(view)

    def commit(self) -> None:
        """Check every section is complete, write the header, fsync and rename into place."""
        try:
            for name, spec in self._specs.items():
                if self._written[name] != spec.nbytes:
                    raise ValueError(f"section {name!r} is incomplete")
            header = self._header_bytes(self._crc, self._offsets, self._size)
            header = header.ljust(self._header_room, b" ")
            prefix = _PREFIX.pack(MAGIC, CONTAINER_VERSION, len(header), zlib.crc32(header), 0)
            os.pwrite(self._fd, prefix + header, 0)
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        with contextlib.suppress(OSError):  # not every platform can fsync a directory
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def abort(self) -> None:
        """Drop the temporary file; the target path is left untouched."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self) -> SectionWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@dataclass(frozen=True, slots=True)
class MappedFile:
    """An opened container: parameters and read-only arrays backed by a shared mapping."""

    path: Path
    params: dict[str, Any]
    sections: dict[str, npt.NDArray[Any]]
    crcs: dict[str, int]
    size: int

    def verify(self) -> None:
        """Read every byte and compare section CRCs; raises ``IndexFileError`` on a mismatch."""
        for name, array in self.sections.items():
            if zlib.crc32(_bytes_of(array)) != self.crcs[name]:
                raise IndexFileError(
                    f"{self.path}: section {name!r} fails its checksum; rebuild it"
                )

    def release(self, name: str) -> None:
        """Drop the pages of section ``name`` from this process's mapping (``MADV_DONTNEED``).

        For a section read once at open, such as a faiss index deserialised into memory: its
        mapped pages would otherwise stay resident next to the loaded copy and count twice.
        The file and the shared page cache are untouched; a later read faults pages back in.
        """
        array = self.sections[name]
        mapping: object = array
        while isinstance(mapping, np.ndarray | memoryview):
            mapping = mapping.base if isinstance(mapping, np.ndarray) else mapping.obj
        if not isinstance(mapping, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = array.ctypes.data - np.frombuffer(mapping, np.uint8).ctypes.data
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = (start + array.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


def _damaged(path: Path, why: str) -> IndexFileError:
    return IndexFileError(f"index file {path} is damaged ({why}); rebuild it from the store")


def map_file(
    path: str | os.PathLike[str], kind: str, versions: frozenset[int], *, populate: bool = False
) -> MappedFile:
    """Validate the header of ``path`` and memory-map its sections.

    No data page is read unless ``populate`` asks the kernel to map every page up front
    (``MAP_POPULATE`` where available): a slower open, but no page faults in the first queries.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < _PREFIX.size:
                raise _damaged(path, f"only {size} bytes")
            magic, container, length, crc, _ = _PREFIX.unpack(handle.read(_PREFIX.size))
            if magic != MAGIC:
                raise _damaged(path, "not an uploadscan index file")
            if container != CONTAINER_VERSION:
                raise _damaged(path, f"container version {container} is not supported")
            if length > min(_MAX_HEADER, size - _PREFIX.size):
                raise _damaged(path, "header length out of range")
            raw = handle.read(length)
            if zlib.crc32(raw) != crc:
                raise _damaged(path, "header checksum mismatch")
            if populate and hasattr(mmap, "MAP_POPULATE"):
                flags = mmap.MAP_SHARED | mmap.MAP_POPULATE
                mm = mmap.mmap(handle.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
            else:
                mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise IndexFileError(f"index file {path} is missing; rebuild it from the store") from None
    except OSError as exc:
        raise IndexFileError(f"index file {path} cannot be read: {exc}") from exc
    try:
        header = json.loads(raw)
        if header["kind"] != kind:
            raise _damaged(path, f"holds a {header['kind']!r} index, expected {kind!r}")
        if header["version"] not in versions:
            raise _damaged(path, f"format version {header['version']} is not supported")
        if header["file_size"] != size:
            raise _damaged(path, f"{size} bytes, the header promises {header['file_size']}")
        sections: dict[str, npt.NDArray[Any]] = {}
        crcs: dict[str, int] = {}
        for entry in header["sections"]:
            spec = SectionSpec(entry["name"], entry["dtype"], tuple(entry["shape"]))
            offset = int(entry["offset"])
            if spec.dtype not in _DTYPES or min(spec.shape, default=0) < 0:
                raise _damaged(path, f"section {spec.name!r} has a bad type or shape")
            if spec.nbytes != entry["nbytes"] or offset < _PREFIX.size + length:
                raise _damaged(path, f"section {spec.name!r} has a bad extent")
            if offset + spec.nbytes > size:
                raise _damaged(path, f"section {spec.name!r} runs past the end of the file")
            count = spec.nbytes // np.dtype(spec.dtype).itemsize
            array = np.frombuffer(mm, dtype=np.dtype(spec.dtype), count=count, offset=offset)
            sections[spec.name] = array.reshape(spec.shape)
            crcs[spec.name] = int(entry["crc32"])
        params = dict(header["params"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(path, f"malformed header: {exc}") from exc
    return MappedFile(path, params, sections, crcs, size)
