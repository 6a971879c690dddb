"""The retro join on its own: the delta matcher against faiss brute force, and the streamed
readers of the record (Parquet shards, the SQLite record) against the whole-shard reader.

The reference for "within the radius" is faiss ``IndexBinaryFlat.range_search`` (exhaustive,
exclusive radius, so ``radius + 1``), never our own search. Codes are seeded on both sides of
each radius: exactly ``r`` and ``r + 1`` bits from an added code, plus random ones.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from uploadscan.batch import PublishedItem, PublishedRecord, RecordedPdq, export_parquet
from uploadscan.batch._delta import Delta, DeltaMatcher, as_rows
from uploadscan.batch._parquet import (
    parquet_candidates,
    read_parquet_shard,
    shard_locations,
)
from uploadscan.batch._retro import find_candidates

EMPTY16 = np.empty(0, np.dtype((np.void, 16)))
EMPTY32 = np.empty(0, np.dtype((np.void, 32)))


def flip(code: npt.NDArray[np.uint8], bits: int, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    unpacked = np.unpackbits(code)
    unpacked[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked)


def faiss_within(
    added: npt.NDArray[np.uint8], queries: npt.NDArray[np.uint8], radius: int
) -> npt.NDArray[np.int64]:
    """Rows of ``queries`` within ``radius`` bits of some added code, by exhaustive search."""
    index = faiss.IndexBinaryFlat(256)
    index.add(added)
    lims, _, _ = index.range_search(queries, radius + 1)
    return np.flatnonzero(np.diff(lims))


def pdq_delta(codes: npt.NDArray[np.uint8], radius: int) -> Delta:
    ids = np.arange(codes.shape[0], dtype=np.int64)
    return Delta(0, 1, f"test:{radius}:{codes.shape[0]}", radius, ids, codes, EMPTY16, EMPTY32)


def queries_around(
    added: npt.NDArray[np.uint8], radius: int, count: int, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    queries = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    for row in range(0, count, 3):
        source = added[rng.integers(added.shape[0])]
        bits = min(256, max(0, radius + int(rng.integers(-2, 3))))
        queries[row] = flip(source, bits, rng)
    return queries


@pytest.mark.parametrize(
    ("added", "radius"),
    [(1, 0), (1, 31), (40, 8), (700, 31), (3000, 31), (200, 32), (150, 47), (20, 64)],
)
@pytest.mark.parametrize("max_expanded", [None, 0], ids=["expanded", "index"])
def test_matcher_finds_what_brute_force_finds(
    added: int, radius: int, max_expanded: int | None
) -> None:
    rng = np.random.default_rng(added * 1000 + radius)
    codes = rng.integers(0, 256, (added, 32), dtype=np.uint8)
    queries = queries_around(codes, radius, 4000, rng)
    options = {} if max_expanded is None else {"max_expanded": max_expanded}
    matcher = DeltaMatcher(pdq_delta(codes, radius), **options)
    try:
        assert matcher.method == ("expanded" if max_expanded is None else "index")
        expected = faiss_within(codes, queries, radius)
        assert expected.shape[0] > 600  # the seeded side of the boundary is really there
        assert np.array_equal(np.flatnonzero(matcher.pdq_hits(queries)), expected)
    finally:
        matcher.close()


def test_rows_without_a_hash_never_hit() -> None:
    """A null PDQ reads as 32 zero bytes; an added all-zero code must not match it."""
    codes = np.zeros((1, 32), np.uint8)
    matcher = DeltaMatcher(pdq_delta(codes, 31))
    queries = np.zeros((4, 32), np.uint8)
    valid = np.array([True, False, True, False])
    assert matcher.pdq_hits(queries, valid).tolist() == [True, False, True, False]


def test_digests_match_exactly_and_only_when_present() -> None:
    rng = np.random.default_rng(5)
    md5 = rng.integers(0, 256, (60, 16), dtype=np.uint8)
    sha = rng.integers(0, 256, (60, 32), dtype=np.uint8)
    delta = Delta(
        0,
        1,
        "digests",
        31,
        np.empty(0, np.int64),
        np.empty((0, 32), np.uint8),
        np.sort(as_rows(md5[:20])),
        np.sort(as_rows(sha[40:])),
    )
    matcher = DeltaMatcher(delta)
    assert not matcher.wants_pdq and matcher.wants_md5 and matcher.wants_sha256
    valid = np.ones(60, bool)
    valid[[3, 45]] = False
    assert np.flatnonzero(matcher.digest_hits("md5", md5, valid)).tolist() == [
        i for i in range(20) if i != 3
    ]
    assert np.flatnonzero(matcher.digest_hits("sha256", sha, valid)).tolist() == [
        i for i in range(40, 60) if i != 45
    ]


def recorded_items(
    count: int, added: npt.NDArray[np.uint8], rng: np.random.Generator
) -> tuple[list[PublishedItem], set[str]]:
    """Images (9 PDQ rows each), videos (30 frames) and hashless files; some within 31 bits of
    an added code, some 32 bits away, one by MD5 only. Returns them and the ids that hit."""
    items, hits = [], set()
    for n in range(count):
        kind = n % 5
        frames = 30 if kind == 3 else 0 if kind == 4 else 9
        codes = rng.integers(0, 256, (frames, 32), dtype=np.uint8)
        near = None
        if frames and n % 7 == 0:
            near = 31 if n % 2 else 32
            codes[frames - 1] = flip(added[n % added.shape[0]], near, rng)
        md5 = rng.integers(0, 256, 16, dtype=np.uint8).tobytes().hex()
        if n == 4:
            md5 = "00" * 15 + "01"
            hits.add(f"post/{n}")
        if near == 31:
            hits.add(f"post/{n}")
        video = kind == 3
        rows = tuple(
            RecordedPdq(
                frame if video else -1,
                0 if video else frame,
                float(frame) if video else None,
                90,
                codes[frame].tobytes().hex(),
            )
            for frame in range(frames)
        )
        media = "video/mp4" if video else "image/png" if frames else "application/pdf"
        items.append(PublishedItem(f"post/{n}", 1.7e9 + n, media, md5, None, rows))
    return items, hits


def mixed_delta(added: npt.NDArray[np.uint8]) -> Delta:
    md5 = np.frombuffer(bytes.fromhex("00" * 15 + "01"), np.uint8).reshape(1, 16)
    ids = np.arange(added.shape[0], dtype=np.int64)
    return Delta(0, 1, "mixed", 31, ids, added, np.sort(as_rows(md5)), EMPTY32, frozenset({99}))


def test_streamed_parquet_shards_find_whole_contents(tmp_path: Path) -> None:
    """Batches far smaller than a content (a video spans several), nulls for hashless files:
    the streamed reader returns exactly the contents that hit, each with all its rows, as the
    whole-shard reader and brute force say."""
    rng = np.random.default_rng(17)
    added = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    items, hits = recorded_items(120, added, rng)
    with PublishedRecord.open(tmp_path / "published.sqlite3") as record:
        record.add_many(items)
        files = export_parquet(record, tmp_path / "parquet", shard_rows=25)
    assert len(files) == 5
    delta = mixed_delta(added)
    matcher = DeltaMatcher(delta)
    by_id = {item.content_id: item for item in items}
    found: dict[str, PublishedItem] = {}
    rows_read = 0
    for location in shard_locations(tmp_path / "parquet"):
        streamed, rows = parquet_candidates(location, matcher, batch_rows=7)
        rows_read += rows
        whole = find_candidates(read_parquet_shard(location), delta)
        assert sorted(i.content_id for i in streamed) == sorted(i.content_id for i in whole)
        found.update((i.content_id, i) for i in streamed)
    assert set(found) == hits
    assert rows_read == sum(max(1, len(i.pdq)) for i in items)
    for content_id, item in found.items():
        assert sorted(item.pdq, key=lambda r: (r.frame, r.variant)) == sorted(
            by_id[content_id].pdq, key=lambda r: (r.frame, r.variant)
        )
        assert item.md5 == by_id[content_id].md5
    pdq_hits = {
        item.content_id
        for item in items
        if item.pdq
        and faiss_within(
            added,
            np.array([bytes.fromhex(r.pdq) for r in item.pdq]).view(np.uint8).reshape(-1, 32),
            31,
        ).shape[0]
    }
    assert pdq_hits | {"post/4"} == hits


def test_parquet_export_read_through_a_url(tmp_path: Path) -> None:
    """Workers on other machines read the export through fsspec (here ``file://``)."""
    rng = np.random.default_rng(3)
    added = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    items, hits = recorded_items(30, added, rng)
    with PublishedRecord.open(tmp_path / "published.sqlite3") as record:
        record.add_many(items)
        export_parquet(record, tmp_path / "parquet", shard_rows=10)
    locations = shard_locations(f"file://{tmp_path / 'parquet'}")
    assert len(locations) == 3 and all(loc.startswith("file://") for loc in locations)
    matcher = DeltaMatcher(mixed_delta(added))
    found = {i.content_id for loc in locations for i in parquet_candidates(loc, matcher)[0]}
    assert found == hits


def test_sqlite_record_column_readers(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    added = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    items, _ = recorded_items(40, added, rng)
    with PublishedRecord.open(tmp_path / "published.sqlite3") as record:
        record.add_many(items)
        (lo, hi), *_ = record.shard_ranges(1000)
        owners, codes = record.read_pdq(lo, hi)
        whole = record.read_shard(lo, hi)
        assert record.pdq_rows() == owners.shape[0] == whole.codes.shape[0]
        assert sorted(zip(owners.tolist(), map(bytes, codes), strict=True)) == sorted(
            zip(
                (lo + whole.owner).tolist(),  # row ids are consecutive from lo here
                map(bytes, whole.codes),
                strict=True,
            )
        )
        ids, md5, md5_ok, _, sha_ok = record.read_digests(lo, hi)
        assert ids.tolist() == list(range(lo, hi + 1))
        assert md5_ok.all() and not sha_ok.any()
        assert [bytes(m).hex() for m in md5] == [i.md5 for i in items]
        picked = record.read_contents([int(ids[7]), int(ids[3])])
        assert [p.content_id for p in picked] == ["post/3", "post/7"]


def test_a_worker_keeps_one_delta_at_a_time() -> None:
    """A long-lived worker of a shared cluster runs retro after retro: each new delta's tables
    replace (and close) the previous ones instead of piling up."""
    from uploadscan.batch._dask import worker_cache

    rng = np.random.default_rng(2)
    first = DeltaMatcher(pdq_delta(rng.integers(0, 256, (5, 32), dtype=np.uint8), 300))
    assert first.method == "index"  # holds a temporary index file until closed
    index_dir = Path(first._pdq._dir.name)  # type: ignore[union-attr]
    assert worker_cache("delta:test-1", lambda: first, group="retro-delta") is first
    assert worker_cache("delta:test-1", lambda: None, group="retro-delta") is first
    second = DeltaMatcher(pdq_delta(rng.integers(0, 256, (5, 32), dtype=np.uint8), 31))
    assert worker_cache("delta:test-2", lambda: second, group="retro-delta") is second
    assert not index_dir.exists()
    second.close()
