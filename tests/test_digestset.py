"""Exact digest lookup, checked against a Python dict of hashlib digests."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from uploadscan import IndexFileError, InvalidHashError
from uploadscan.index._digestset import DigestSet


def digests(algorithm: str, count: int, salt: bytes) -> list[bytes]:
    return [hashlib.new(algorithm, salt + i.to_bytes(4, "little")).digest() for i in range(count)]


def as_array(keys: list[bytes]) -> np.ndarray:
    width = len(keys[0]) if keys else 16
    return np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), width)


@pytest.mark.parametrize("algorithm", ["md5", "sha256", "sha1"])
def test_lookup_matches_a_dict(tmp_path: Path, algorithm: str) -> None:
    salt = os.urandom(8)
    print(f"salt={salt.hex()}")
    stored = digests(algorithm, 20_000, salt)
    stored += stored[:50]  # duplicates: the same digest listed again under other ids
    ids = np.arange(len(stored), dtype=np.int64) * 3 - 1000
    expected: dict[bytes, set[int]] = defaultdict(set)
    for key, ident in zip(stored, ids.tolist(), strict=True):
        expected[key].add(ident)
    digest_set = DigestSet.build(as_array(stored), ids, tmp_path / "d.idx")
    assert len(digest_set) == len(stored)
    misses = digests(algorithm, 200, salt + b"x")
    # Near misses: equal first 8 bytes (the bisection key), different tail.
    near = [key[:8] + bytes(b ^ 1 for b in key[8:]) for key in stored[:100]]
    queries = stored[::97] + misses + near + stored[:3]
    q_idx, found = DigestSet.open(tmp_path / "d.idx").lookup(as_array(queries))
    got: dict[int, set[int]] = defaultdict(set)
    for q, ident in zip(q_idx.tolist(), found.tolist(), strict=True):
        got[q].add(ident)
    want = {q: expected[key] for q, key in enumerate(queries) if key in expected}
    assert got == want
    assert q_idx.dtype == np.int32 and found.dtype == np.int64


def test_empty_set_and_wrong_width(tmp_path: Path) -> None:
    digest_set = DigestSet.build(np.empty((0, 32), np.uint8), np.empty(0, np.int64), tmp_path / "e")
    q, ids = digest_set.lookup(np.zeros((2, 32), np.uint8))
    assert len(q) == 0 and len(ids) == 0
    with pytest.raises(InvalidHashError):
        digest_set.lookup(np.zeros((2, 16), np.uint8))


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    path = tmp_path / "d.idx"
    DigestSet.build(as_array(digests("md5", 1000, b"a")), np.arange(1000), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(IndexFileError, match="damaged"):
        DigestSet.open(path)
    damaged = bytearray(data)
    damaged[30] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(IndexFileError, match="damaged"):
        DigestSet.open(path)


def test_replaced_file_keeps_old_handle_valid(tmp_path: Path) -> None:
    path = tmp_path / "d.idx"
    old_keys = digests("sha256", 500, b"old")
    old = DigestSet.build(as_array(old_keys), np.arange(500), path)
    DigestSet.build(as_array(digests("sha256", 500, b"new")), np.arange(500), path)
    q, ids = old.lookup(as_array(old_keys[:5]))
    assert q.tolist() == [0, 1, 2, 3, 4] and ids.tolist() == [0, 1, 2, 3, 4]
    assert len(DigestSet.open(path).lookup(as_array(old_keys[:5]))[0]) == 0
