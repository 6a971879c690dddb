"""Exact lookup of cryptographic digests (MD5, SHA-256, ...) in a memory-mapped sorted file.

Digests match only when equal, so the structure is a sorted array searched by bisection: no
hashing, no scan, and nothing to rebuild when a worker process opens the file. Keys are stored as
big-endian 64-bit words (byte order = numeric order) with the first word in its own section, so
``np.searchsorted`` runs directly on the mapped file; the remaining words break ties. Keys whose
length is not a multiple of 8 (SHA-1's 20 bytes) are zero-padded, which keeps equality exact
because every key of a file has the same length.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from uploadscan._errors import ConfigError, IndexFileError, InvalidHashError
from uploadscan.index._mih import expand_ranges
from uploadscan.index._mmapfile import MappedFile, SectionSpec, SectionWriter, map_file

__all__ = ["DigestSet"]

_KIND = "digestset"
_VERSION = 1


def _words(keys: npt.NDArray[np.uint8], key_bytes: int) -> npt.NDArray[np.uint64]:
    """(n, ceil(key_bytes/8)) native uint64 words whose order is the keys' byte order."""
    width = -(-key_bytes // 8) * 8
    if width != key_bytes:
        padded = np.zeros((keys.shape[0], width), np.uint8)
        padded[:, :key_bytes] = keys
        keys = padded
    return np.ascontiguousarray(keys).view(">u8").astype(np.uint64)


def _check_keys(keys: npt.NDArray[np.uint8], key_bytes: int | None, what: str) -> None:
    if keys.ndim != 2 or keys.dtype != np.uint8 or keys.shape[1] == 0:
        raise InvalidHashError(f"{what} must be a 2-D uint8 array, got {keys.dtype} {keys.shape}")
    if key_bytes is not None and keys.shape[1] != key_bytes:
        raise InvalidHashError(
            f"{what} are {keys.shape[1]} bytes long; this digest set holds {key_bytes}"
        )


class DigestSet:
    """A sorted, memory-mapped set of fixed-length digests, each with an int64 id."""

    def __init__(
        self,
        path: Path,
        key_bytes: int,
        sections: dict[str, npt.NDArray[np.generic]],
        size: int,
        mapped: MappedFile | None = None,
    ) -> None:
        """Use ``DigestSet.open``; this wraps already validated sections."""
        self._mapped = mapped
        self.path = path
        self.key_bytes = key_bytes
        self._head = np.asarray(sections["head"], dtype=np.uint64)
        self._rest = np.asarray(sections["rest"], dtype=np.uint64)
        self._ids = np.asarray(sections["ids"], dtype=np.int64)
        self._size = size

    @classmethod
    def build(
        cls,
        keys: npt.NDArray[np.uint8],
        ids: npt.NDArray[np.int64],
        path: str | os.PathLike[str],
    ) -> DigestSet:
        """Write (n, key_bytes) uint8 ``keys`` with one id each to ``path`` (atomic replace).

        Duplicate keys are kept: a lookup returns every id stored under a key.
        """
        _check_keys(keys, None, "keys")
        ids = np.asarray(ids)
        if ids.shape != (keys.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
            raise ConfigError(f"ids must be {keys.shape[0]} integers, got {ids.dtype} {ids.shape}")
        n, key_bytes = keys.shape
        words = _words(keys, key_bytes)
        order = np.lexsort(words.T[::-1])  # last key is primary: first word, then the rest
        words = words[order]
        specs = [
            SectionSpec("head", "<u8", (n,)),
            SectionSpec("rest", "<u8", (n, words.shape[1] - 1)),
            SectionSpec("ids", "<i8", (n,)),
        ]
        params = {"key_bytes": key_bytes, "n": n}
        with SectionWriter(path, _KIND, _VERSION, params, specs) as writer:
            writer.append("head", words[:, 0])
            writer.append("rest", words[:, 1:])
            writer.append("ids", ids.astype(np.int64)[order])
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> DigestSet:
        """Memory-map ``path``; raises ``IndexFileError`` if it is missing or damaged."""
        mapped = map_file(path, _KIND, frozenset({_VERSION}))
        try:
            key_bytes, n = int(mapped.params["key_bytes"]), int(mapped.params["n"])
            sections = mapped.sections
            words = -(-key_bytes // 8)
            if key_bytes <= 0 or sections["head"].shape != (n,) or sections["ids"].shape != (n,):
                raise ValueError("section sizes do not match the parameters")
            if sections["rest"].shape != (n, words - 1):
                raise ValueError("key words do not match the key length")
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFileError(f"digest file {path} is damaged ({exc}); rebuild it") from exc
        return cls(mapped.path, key_bytes, sections, mapped.size, mapped)

    def verify(self) -> None:
        """Check every section's checksum (reads the whole file; for repair tools)."""
        if self._mapped is None:
            raise IndexFileError(f"{self.path}: not opened from a file; nothing to verify")
        self._mapped.verify()

    def __len__(self) -> int:
        return int(self._head.shape[0])

    @property
    def nbytes(self) -> int:
        """Size of the mapped file in bytes."""
        return self._size

    def lookup(
        self, queries: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """(query row, id) of every stored key equal to a row of ``queries``."""
        _check_keys(queries, self.key_bytes, "queries")
        if len(self) == 0 or queries.shape[0] == 0:
            return np.empty(0, np.int32), np.empty(0, np.int64)
        words = _words(queries, self.key_bytes)
        lo = np.searchsorted(self._head, words[:, 0], side="left")
        hi = np.searchsorted(self._head, words[:, 0], side="right")
        counts = (hi - lo).astype(np.int64)
        rows = expand_ranges(lo.astype(np.int64), counts)
        query = np.repeat(np.arange(queries.shape[0]), counts)
        try:
            equal = np.all(np.take(self._rest, rows, axis=0) == words[query, 1:], axis=1)
            return query[equal].astype(np.int32), np.take(self._ids, rows[equal])
        except IndexError as exc:
            raise IndexFileError(f"digest file {self.path} is damaged ({exc}); rebuild it") from exc
