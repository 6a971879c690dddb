"""The Hamming index must return exactly what brute force returns, at every radius.

The reference here is written independently of the index's popcount kernels: it unpacks every
bit and counts them. Seeds are printed so a failure can be replayed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from uploadscan import ConfigError, IndexFileError, InvalidHashError
from uploadscan.index._hamming import HammingIndex, SearchHits, brute_force_search

Triples = set[tuple[int, int, int]]


def reference(
    codes: npt.NDArray[np.uint8], ids: npt.NDArray[np.int64], queries: npt.NDArray[np.uint8], r: int
) -> Triples:
    """(query, id, distance) of every pair within r, by unpacking every bit."""
    found: Triples = set()
    if codes.shape[0] == 0:
        return found
    bits = np.unpackbits(codes, axis=1).astype(np.int16)
    for qi, query in enumerate(np.unpackbits(queries, axis=1).astype(np.int16)):
        dist = np.abs(bits - query).sum(axis=1)
        for row in np.flatnonzero(dist <= r):
            found.add((qi, int(ids[row]), int(dist[row])))
    return found


def triples(hits: SearchHits) -> Triples:
    result = set(zip(hits.query.tolist(), hits.ids.tolist(), hits.distance.tolist(), strict=True))
    assert len(result) == len(hits), "a hit was reported twice"
    return result


def flip_bits(
    codes: npt.NDArray[np.uint8], count: int, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    """Copies of ``codes`` with exactly ``count`` distinct bits flipped in each row."""
    out = codes.copy()
    for row in out:
        for bit in rng.choice(codes.shape[1] * 8, size=count, replace=False):
            row[bit // 8] ^= np.uint8(0x80 >> (bit % 8))
    return out


def random_codes(
    rng: np.random.Generator, n: int, nbytes: int = 32
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    codes = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    ids = rng.choice(np.iinfo(np.int64).max, size=n, replace=False).astype(np.int64) - 2**62
    return codes, ids


@pytest.fixture
def seed() -> int:
    value = int.from_bytes(os.urandom(4), "little")
    print(f"seed={value}")
    return value


@pytest.mark.slow  # no media: runs once in CI, in the pass with the extended corpus
@pytest.mark.parametrize("substrings", [None, 0, 11, 16])
def test_random_codes_match_brute_force_at_every_radius(
    tmp_path: Path, seed: int, substrings: int | None
) -> None:
    rng = np.random.default_rng(seed)
    codes, ids = random_codes(rng, 20_000)
    index = HammingIndex.build(codes, ids, tmp_path / "pdq.idx", substrings=substrings)
    if substrings is not None:
        assert len(index.substring_bits) == substrings
    members = codes[rng.integers(0, len(codes), 12)]
    queries = np.concatenate(
        [flip_bits(members, int(d), rng) for d in rng.integers(0, 45, 6)]
        + [rng.integers(0, 256, size=(4, 32), dtype=np.uint8)]
    )
    for r in (0, 7, 8, 9, 30, 31, 32, 39, 40, 41, 100):
        assert triples(index.search(queries, r)) == reference(codes, ids, queries, r), r


@pytest.mark.parametrize("substrings", [None, 0, 12, 16])
def test_planted_neighbours_on_both_sides_of_the_threshold(
    tmp_path: Path, seed: int, substrings: int | None
) -> None:
    rng = np.random.default_rng(seed)
    background, background_ids = random_codes(rng, 30_000)
    queries = rng.integers(0, 256, size=(8, 32), dtype=np.uint8)
    planted = np.concatenate([flip_bits(queries, d, rng) for d in (30, 31, 32)])
    codes = np.concatenate([background, planted])
    ids = np.concatenate([background_ids, np.arange(24, dtype=np.int64)])
    index = HammingIndex.build(codes, ids, tmp_path / "pdq.idx", substrings=substrings)
    hits = triples(index.search(queries, 31))
    for q in range(8):
        assert (q, q, 30) in hits
        assert (q, 8 + q, 31) in hits
        assert not any(i == 16 + q for _, i, _ in hits), "distance 32 is beyond the threshold"
    for r in (30, 31, 32):
        assert triples(index.search(queries, r)) == reference(codes, ids, queries, r)


@pytest.mark.slow  # no media: runs once in CI, in the pass with the extended corpus
def test_64_bit_codes(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes, ids = random_codes(rng, 40_000, nbytes=8)
    index = HammingIndex.build(codes, ids, tmp_path / "ahash.idx")
    assert index.code_bytes == 8 and index.substring_bits
    queries = np.concatenate(
        [flip_bits(codes[:5], d, rng) for d in (0, 4, 8, 10, 11, 12)]
        + [rng.integers(0, 256, size=(3, 8), dtype=np.uint8)]
    )
    for r in (0, 5, 8, 10, 11, 16, 64):
        assert triples(index.search(queries, r)) == reference(codes, ids, queries, r), r


def test_empty_index_and_empty_batch(tmp_path: Path) -> None:
    index = HammingIndex.build(np.empty((0, 32), np.uint8), np.empty(0, np.int64), tmp_path / "e")
    assert len(index) == 0
    hits = HammingIndex.open(tmp_path / "e").search(np.zeros((3, 32), np.uint8), 31)
    assert len(hits) == 0 and hits.query.dtype == np.int32 and hits.ids.dtype == np.int64
    rng = np.random.default_rng(1)
    codes, ids = random_codes(rng, 100)
    assert len(HammingIndex.build(codes, ids, tmp_path / "f").search(codes[:0], 31)) == 0


def test_duplicate_codes_and_ids_are_all_returned(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes, ids = random_codes(rng, 5_000)
    codes[100:110] = codes[7]  # the same hash listed ten more times
    ids[200:205] = ids[9]  # one id on several rows
    for substrings in (0, 16):
        index = HammingIndex.build(codes, ids, tmp_path / "d.idx", substrings=substrings)
        hits = index.search(np.concatenate([codes[7:8], codes[9:10]]), 0)
        assert sorted(hits.ids[hits.query == 0].tolist()) == sorted([ids[7], *ids[100:110]])
        assert triples(hits) == reference(codes, ids, np.concatenate([codes[7:8], codes[9:10]]), 0)


@pytest.mark.extended  # the reference implementation's own regression-test hashes
def test_real_pdq_hashes_from_the_reference_implementation(tmp_path: Path, data_dir: Path) -> None:
    folder = data_dir / "threatexchange/pdq/data/reg-test-input"

    def load(name: str) -> npt.NDArray[np.uint8]:
        lines = (folder / name).read_text().split()
        return np.frombuffer(bytes.fromhex("".join(lines)), np.uint8).reshape(len(lines), 32)

    haystack, needles = load("haystack.txt"), load("needles.txt")
    assert haystack.shape == (1350, 32) and needles.shape == (100, 32)
    ids = np.arange(len(haystack), dtype=np.int64) * 7 + 3
    for substrings in (None, 0, 12, 16):
        index = HammingIndex.build(haystack, ids, tmp_path / "h.idx", substrings=substrings)
        for r in (0, 8, 30, 31, 32, 40):
            expected = reference(haystack, ids, needles, r)
            assert triples(index.search(needles, r)) == expected, (substrings, r)
    assert len(reference(haystack, ids, needles, 31)) > 100  # the needles are in the haystack


def test_brute_force_search_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes, ids = random_codes(rng, 3_000)
    queries = flip_bits(codes[:10], 31, rng)
    hits = brute_force_search(codes, ids, queries, 31)
    assert triples(hits) == reference(codes, ids, queries, 31)
    assert np.all(np.diff(hits.query) >= 0)


def test_persistence_round_trip_in_a_fresh_process(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes, ids = random_codes(rng, 20_000)
    queries = flip_bits(codes[:20], 25, rng)
    path = tmp_path / "pdq.idx"
    expected = triples(HammingIndex.build(codes, ids, path).search(queries, 31))
    assert len(expected) >= 20
    np.save(tmp_path / "queries.npy", queries)
    script = (
        "import sys, numpy as np\n"
        "from uploadscan.index._hamming import HammingIndex\n"
        "index = HammingIndex.open(sys.argv[1])\n"
        "hits = index.search(np.load(sys.argv[2]), 31)\n"
        "for t in zip(hits.query.tolist(), hits.ids.tolist(), hits.distance.tolist()):\n"
        "    print(*t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "queries.npy")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {tuple(int(x) for x in line.split()) for line in out.splitlines()}
    assert found == expected


def test_replacing_the_file_keeps_open_handles_valid(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    old_codes, old_ids = random_codes(rng, 20_000)
    new_codes, new_ids = random_codes(rng, 20_000)
    path = tmp_path / "list.idx"
    old = HammingIndex.build(old_codes, old_ids, path)
    queries = flip_bits(old_codes[:10], 20, rng)
    before = triples(old.search(queries, 31))
    HammingIndex.build(new_codes, new_ids, path)
    assert triples(old.search(queries, 31)) == before  # the old mapping still reads the old file
    expected = reference(new_codes, new_ids, queries, 31)
    assert triples(HammingIndex.open(path).search(queries, 31)) == expected
    assert triples(HammingIndex.open(path, populate=True).search(queries, 31)) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["list.idx"]  # no temporary files left


def _built(tmp_path: Path) -> tuple[Path, bytes]:
    rng = np.random.default_rng(5)
    codes, ids = random_codes(rng, 20_000)
    path = tmp_path / "pdq.idx"
    HammingIndex.build(codes, ids, path, substrings=16)
    return path, path.read_bytes()


@pytest.mark.parametrize("keep", [0, 10, 30, 200, -1])
def test_truncated_file_is_a_typed_error(tmp_path: Path, keep: int) -> None:
    path, data = _built(tmp_path)
    path.write_bytes(data[:keep] if keep >= 0 else data[: len(data) // 2])
    with pytest.raises(IndexFileError, match="damaged"):
        HammingIndex.open(path)


@pytest.mark.parametrize("where", [0, 12, 40, 300])
def test_corrupted_header_is_a_typed_error(tmp_path: Path, where: int) -> None:
    path, data = _built(tmp_path)
    damaged = bytearray(data)
    damaged[where] ^= 0x55
    path.write_bytes(bytes(damaged))
    with pytest.raises(IndexFileError, match="damaged"):
        HammingIndex.open(path)


@pytest.mark.parametrize("section", ["offsets", "pos_lo"])
def test_corrupted_tables_never_crash_and_verify_reports_them(tmp_path: Path, section: str) -> None:
    path, data = _built(tmp_path)
    length = int.from_bytes(data[12:16], "little")
    extent = next(s for s in json.loads(data[24 : 24 + length])["sections"] if s["name"] == section)
    # Garbage inside the section, sparing the table boundaries that are checked on open.
    start, size = extent["offset"] + 4096, min(200_000, extent["nbytes"] - 8192)
    noise = np.random.default_rng(2).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(data[:start] + noise + data[start + size :])
    index = HammingIndex.open(path)
    with pytest.raises(IndexFileError, match="checksum"):
        index.verify()
    queries = np.random.default_rng(3).integers(0, 256, size=(50, 32), dtype=np.uint8)
    for r in (8, 31):
        # A typed error is fine; a crash or a foreign exception is not.
        with contextlib.suppress(IndexFileError):
            index.search(queries, r)


def test_missing_file_and_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError, match="missing"):
        HammingIndex.open(tmp_path / "nope.idx")
    from uploadscan.index._digestset import DigestSet

    DigestSet.build(np.zeros((3, 16), np.uint8), np.arange(3), tmp_path / "md5.idx")
    with pytest.raises(IndexFileError, match="digestset"):
        HammingIndex.open(tmp_path / "md5.idx")


def test_bad_arguments_are_typed_errors(tmp_path: Path) -> None:
    codes, ids = random_codes(np.random.default_rng(0), 100)
    index = HammingIndex.build(codes, ids, tmp_path / "x.idx")
    with pytest.raises(InvalidHashError):
        index.search(np.zeros((1, 8), np.uint8), 31)
    with pytest.raises(InvalidHashError):
        index.search(np.zeros((1, 32), np.int64), 31)
    with pytest.raises(ConfigError):
        index.search(codes[:1], -1)
    with pytest.raises(InvalidHashError):
        HammingIndex.build(np.zeros((4, 5), np.uint8), np.arange(4), tmp_path / "y.idx")
    with pytest.raises(ConfigError):
        HammingIndex.build(codes, ids[:-1], tmp_path / "y.idx")
    with pytest.raises(ConfigError):
        HammingIndex.build(codes, ids, tmp_path / "y.idx", substrings=3)
    assert not (tmp_path / "y.idx").exists()
