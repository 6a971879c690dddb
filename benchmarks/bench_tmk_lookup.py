"""TMK lookup at scale: level 1 against 100 k listed values, one thread.

What a scan does with a TMK list: the upload's value is shortlisted by level 1 (cosine of
the pure averages) in the list's vector index file, a faiss exact inner-product index over
unit averages, then each shortlisted entry is scored at level 2 from its stored value, which
the index file memory-maps. Measured here, in one run:

- level-1 lookup (``VectorIndex.range`` at 0.7) per query, p50/p99, one faiss thread, next to
  brute force in numpy (one matrix-vector product over all unit averages) as the peer;
- the whole TMK search (``TmkHashType.search``: parse the query, level 1, level 2 of the
  shortlisted entries from the memory-mapped file);
- recall at 0.7 against brute force in float64: the shortlist must keep every entry whose
  level 1 reaches 0.7, however close to it;
- resident memory of the opened index against the raw level-1 vectors (N x 256 float32), and
  after all the queries (the level-2 data is read from the map, never loaded).

The values are synthesised, and the script says so: 100 k real ``.tmk`` files are 26 GB. Each
listed distractor is a small but valid ``.tmk`` (one period, one harmonic: "small cos/sin
parts") whose average is a random direction, or, for 1 in 50, a direction placed at a
cosine between 0.65 and 0.75 from one of the queries, so the threshold is crowded. Each
query is a reference-layout value (263 KB) listed in full too, so its true match goes
through level 2 at full cost; distractors never reach level 2 (their parameters cannot be
scored against an upload's).

    python benchmarks/bench_tmk_lookup.py            # 100 k listed values, 200 queries
    python benchmarks/bench_tmk_lookup.py --quick    # 10 k, 50 queries
"""

from __future__ import annotations

import argparse
import gc
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import percentile, print_machine_info  # noqa: E402

from uploadscan.hashing._tmk import TmkHashType  # noqa: E402
from uploadscan.hashing._tmk_format import (  # noqa: E402
    FEATURE_DIMENSION,
    FOURIER_COEFFICIENTS,
    PERIODS,
    TmkHash,
    parse_text,
)
from uploadscan.index._vectors import VectorIndex  # noqa: E402

THRESHOLD = 0.7
TMK = TmkHashType()
_HEADER = struct.Struct("<4s4s4siiiii")


def _small_tmk(average: np.ndarray, rng: np.random.Generator) -> bytes:
    """A valid generic .tmk with one period and one harmonic (3 KB)."""
    header = _HEADER.pack(b"TMK1", b"FVEC", b"PDQF", 15, 1, 1, FEATURE_DIMENSION, 900)
    parts = [
        header,
        np.asarray([PERIODS[0]], "<i4").tobytes(),
        np.asarray([1.0], "<f4").tobytes(),
        average.astype("<f4").tobytes(),
        rng.normal(size=FEATURE_DIMENSION).astype("<f4").tobytes(),
        rng.normal(size=FEATURE_DIMENSION).astype("<f4").tobytes(),
    ]
    return b"".join(parts)


def _query(rng: np.random.Generator) -> TmkHash:
    """A reference-layout value: random average, unit cos/sin blocks scaled like ours."""
    shape = (len(PERIODS), len(FOURIER_COEFFICIENTS), FEATURE_DIMENSION)
    blocks = []
    for _ in range(2):
        block = rng.normal(size=shape)
        block /= np.linalg.norm(block, axis=2, keepdims=True)
        scale = np.sqrt(FOURIER_COEFFICIENTS.astype(np.float64))[None, :, None]
        blocks.append((block * scale).astype(np.float32))
    return TmkHash(
        frames_per_second=15,
        periods=PERIODS,
        fourier_coefficients=FOURIER_COEFFICIENTS,
        frame_count=900,
        pure_average=(rng.normal(size=FEATURE_DIMENSION) * 40).astype(np.float32),
        cos_features=blocks[0],
        sin_features=blocks[1],
    )


def _near(direction: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(size=direction.shape[0])
    orthogonal = noise - (noise @ direction) * direction
    orthogonal /= np.linalg.norm(orthogonal)
    out: np.ndarray = (cosine * direction + np.sqrt(1 - cosine**2) * orthogonal) * 40
    return out


def build(path: Path, listed: int, queries: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    query_values = [_query(rng) for _ in range(queries)]
    units = [q.pure_average / np.linalg.norm(q.pure_average) for q in query_values]
    values = [q.to_bytes() for q in query_values]  # each query's true match, in full
    for number in range(listed - queries):
        if number % 50 == 0:
            average = _near(
                units[rng.integers(queries)].astype(np.float64), rng.uniform(0.65, 0.75), rng
            )
        else:
            average = rng.normal(size=FEATURE_DIMENSION) * 40
        values.append(_small_tmk(average, rng))
    ids = np.arange(len(values), dtype=np.int64)
    # The peer's copy of the unit averages, made here so measuring does not read the file.
    np.save(path.parent / "units.npy", np.vstack([TMK.vectors(v) for v in values]))
    started = time.perf_counter()
    VectorIndex.build(TMK, ids, values, path)
    print(f"built {len(values):,} values into {path.name} ({path.stat().st_size / 1e6:.0f} MB) "
          f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    (path.parent / "queries.txt").write_text("".join(q.to_text() + "\n" for q in query_values))


def _rss() -> int:
    """Resident bytes: anonymous memory plus mapped file pages (``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_parts() -> tuple[float, float]:
    """(anonymous, file-backed) resident memory in MB."""
    parts: dict[str, float] = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("RssAnon", "RssFile")):
                key, value = line.split(":")
                parts[key] = int(value.split()[0]) / 1e3
    return parts.get("RssAnon", 0.0), parts.get("RssFile", 0.0)


def measure(path: Path) -> None:
    faiss.omp_set_num_threads(1)
    texts = (path.parent / "queries.txt").read_text().split()
    vectors = [TMK.vectors(parse_text(t).to_bytes()) for t in texts]
    gc.collect()
    before = _rss()
    parts_before = _rss_parts()
    started = time.perf_counter()
    index = VectorIndex.open(TMK, path)
    opened = time.perf_counter() - started
    after_open = _rss()
    parts_open = _rss_parts()
    listed = len(index)
    raw = index.vector_count * FEATURE_DIMENSION * 4
    level1: list[float] = []
    level1_cpu: list[float] = []
    search: list[float] = []
    shortlists: list[set[int]] = []
    kept = 0
    for text, vector in zip(texts, vectors, strict=True):
        t0, c0 = time.perf_counter(), time.thread_time()
        _, rows, _ = index.range(vector, THRESHOLD - 1e-5)
        level1.append(time.perf_counter() - t0)
        level1_cpu.append(time.thread_time() - c0)
        shortlists.append(set(rows.tolist()))
        t0 = time.perf_counter()
        hits = TMK.search(index, text, THRESHOLD)
        search.append(time.perf_counter() - t0)
        kept += sum(1 for h in hits if h.measure >= THRESHOLD)
    parts_search = _rss_parts()
    # The peer, and the recall check: brute force over the same unit averages.
    units = np.load(path.parent / "units.npy")
    brute: list[float] = []
    brute_cpu: list[float] = []
    expected_total = missed = extra = candidates = 0
    for vector, shortlist in zip(vectors, shortlists, strict=True):
        t0, c0 = time.perf_counter(), time.thread_time()
        scores = units @ vector[0]
        brute.append(time.perf_counter() - t0)
        brute_cpu.append(time.thread_time() - c0)
        assert scores.shape[0] == listed
        # The float64 cosine decides; the shortlist must hold every entry reaching it.
        exact = units.astype(np.float64) @ vector[0].astype(np.float64)
        expected = set(np.flatnonzero(exact >= THRESHOLD).tolist())
        missed += len(expected - shortlist)
        extra += len({r for r in shortlist if exact[r] >= THRESHOLD} - expected)
        expected_total += len(expected)
        candidates += len(shortlist)
    print(f"\n{listed:,} listed values ({index.vector_count:,} level-1 vectors), {len(texts)} "
          "queries, one faiss thread; values synthesised (see the docstring)")  # fmt: skip
    print("| what | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, times in (
        ("level 1, faiss exact inner product (range at 0.7)", level1),
        ("level 1, numpy brute force (peer)", brute),
        ("level 1, faiss: CPU time of the thread (without waiting for a core)", level1_cpu),
        ("level 1, numpy brute force: CPU time of the thread", brute_cpu),
        ("TMK search: parse + level 1 + level 2 of the shortlist", search),
    ):
        print(f"| {name} | {percentile(times, 50) * 1e3:.2f} | {percentile(times, 99) * 1e3:.2f} |")
    print(f"\nrecall at {THRESHOLD}: {expected_total - missed} of {expected_total} entries whose "
          f"float64 level 1 reaches it were shortlisted (missed {missed}, {extra} beyond brute "
          f"force); {candidates} shortlisted in all, {kept} confirmed at level 2 (the queries' "
          "own values)")  # fmt: skip
    grown = after_open - before
    print(f"index opened in {opened * 1e3:.1f} ms; resident memory +{grown / 1e6:.1f} MB for "
          f"{raw / 1e6:.1f} MB of raw level-1 vectors ({grown / raw:.2f}x)")  # fmt: skip
    anon_open, file_open = parts_open
    anon_search, file_search = parts_search
    print(f"after {len(texts)} searches: anonymous memory {anon_search - anon_open:+.1f} MB, "
          f"mapped file pages {file_search - file_open:+.1f} MB of the "
          f"{path.stat().st_size / 1e6:.0f} MB file (the level-2 values are read through the "
          "map: shared page cache, which this kernel maps in large folios around each value "
          "read, never a per-query copy)")  # fmt: skip
    print(f"process before opening: anonymous {parts_before[0]:.1f} MB, file pages "
          f"{parts_before[1]:.1f} MB")  # fmt: skip
    assert missed == 0 and extra == 0, "recall at the threshold must equal brute force"
    assert kept == len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 k values, 50 queries")
    parser.add_argument("--listed", type=int, default=None)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:  # the second process: a fresh heap for honest RSS
        measure(args.measure)
        return
    print_machine_info(
        [("faiss threads", "1 (omp_set_num_threads)"), ("measuring process", "OMP/OpenBLAS/MKL 1")]
    )
    listed = args.listed or (10_000 if args.quick else 100_000)
    queries = args.queries or (50 if args.quick else 200)
    with tempfile.TemporaryDirectory(prefix="uploadscan-bench-tmk-") as folder:
        path = Path(folder) / "tmk.idx"
        build(path, listed, queries, args.seed)
        # One thread for faiss and for numpy's BLAS (the peer) alike.
        one = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env = {**os.environ, **one}
        subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True, env=env)


if __name__ == "__main__":
    main()
