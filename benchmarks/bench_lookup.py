"""Exact PDQ lookup: our multi-index Hamming index against brute force and the peers.

    python benchmarks/bench_lookup.py            # 100 k and 1 M random PDQ hashes, ~3-5 minutes
    python benchmarks/bench_lookup.py --quick    # 100 k only, fewer queries, < 60 s
    python benchmarks/bench_lookup.py --full     # adds 10 M hashes (~320 MB raw), ~20 minutes

Each contender runs in its own subprocess on the same seeded hashes and queries, so resident
memory (VmRSS delta from before the index exists to after the queries) is not polluted by the
others. Queries: list members with exactly d bits flipped for d = 0..40 (31 and 32 included,
both sides of the threshold) plus random non-members, shuffled. Latency is one query per call
(a single image hash); "ours-batch8" also shows the dihedral-variant case (time per query) and
"ours-populate" opens with ``populate=True`` (no page faults in the first queries). Recall and false
matches are counted against an exhaustive scan at distance <= 31 over every query a contender ran.
Everything is single-threaded (faiss.omp_set_num_threads(1)).

Contenders: numpy brute force (``brute_force_search``), faiss IndexBinaryFlat range search,
faiss IndexBinaryMultiHash (16 x 16 bits, nflip=1), python-threatexchange's PDQIndex (faiss
multi-hash inside; 100 k and 1 M only) and ours (``HammingIndex``, memory-mapped file).
Finally the reference implementation's haystack/needles hashes are searched at 31 and compared
with brute force.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import find_data_dir, print_machine_info, print_table, summarize_ms

from uploadscan.index._hamming import HammingIndex, brute_force_search

THRESHOLD = 31
SEED = 20240531
CONTENDERS = [
    "ours",
    "ours-populate",
    "ours-batch8",
    "numpy-brute",
    "faiss-flat",
    "faiss-multihash",
    "pytx-pdqindex",
]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def make_data(
    n: int, per_distance: int, non_members: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """Seeded hashes and shuffled queries; ``dist_label`` is the planted distance (-1: random)."""
    rng = np.random.default_rng(SEED + n)
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    queries, labels = [], []
    for d in range(41):
        picked = codes[rng.integers(0, n, per_distance)].copy()
        for row in picked:
            for bit in rng.choice(256, d, replace=False):
                row[bit // 8] ^= np.uint8(1 << (bit % 8))
        queries.append(picked)
        labels += [d] * per_distance
    queries.append(rng.integers(0, 256, size=(non_members, 32), dtype=np.uint8))
    labels += [-1] * non_members
    order = rng.permutation(len(labels))
    return codes, np.concatenate(queries)[order], np.asarray(labels, np.int32)[order]


def truth(codes: npt.NDArray[np.uint8], queries: npt.NDArray[np.uint8]) -> set[tuple[int, int]]:
    """(query, row) pairs within the threshold by exhaustive scan (faiss IndexBinaryFlat, all
    cores; numpy's scan is too slow for 10 M x 1,000 queries). The numpy brute-force contender
    cross-checks it on the queries it runs."""
    import faiss

    flat = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    flat.add(codes)
    lims, _, labels = flat.range_search(queries, THRESHOLD + 1)  # the radius is exclusive
    return {(q, int(r)) for q in range(len(queries)) for r in labels[lims[q] : lims[q + 1]]}


# ---- one contender, in a worker process --------------------------------------------------


def worker(name: str, n: int, per_distance: int, non_members: int, budget: float, out: str) -> None:
    import faiss

    faiss.omp_set_num_threads(1)
    codes, queries, _ = make_data(n, per_distance, non_members)
    ids = np.arange(n, dtype=np.int64)
    gc.collect()
    result: dict[str, Any] = {"build_s": None, "open_s": None}
    base = rss_bytes()
    t0 = time.perf_counter()
    batch = 1
    if name.startswith("ours"):
        path = Path(out).with_suffix(".idx")
        HammingIndex.build(codes, ids, path)
        result["build_s"] = time.perf_counter() - t0
        gc.collect()
        base = rss_bytes()
        t0 = time.perf_counter()
        index = HammingIndex.open(path, populate=name == "ours-populate")
        result["open_s"] = time.perf_counter() - t0
        result["layout"] = f"{len(index.substring_bits)} x {max(index.substring_bits, default=0)}b"
        batch = 8 if name == "ours-batch8" else 1

        def search(q: npt.NDArray[np.uint8]) -> list[tuple[int, int]]:
            hits = index.search(q, THRESHOLD)
            return list(zip(hits.query.tolist(), hits.ids.tolist(), strict=True))

    elif name == "numpy-brute":

        def search(q: npt.NDArray[np.uint8]) -> list[tuple[int, int]]:
            hits = brute_force_search(codes, ids, q, THRESHOLD)
            return list(zip(hits.query.tolist(), hits.ids.tolist(), strict=True))

    elif name in ("faiss-flat", "faiss-multihash"):
        if name == "faiss-flat":
            findex = faiss.IndexBinaryFlat(256)
        else:
            findex = faiss.IndexBinaryMultiHash(256, 16, 16)
            findex.nflip = 1
        findex.add(codes)
        result["build_s"] = time.perf_counter() - t0

        def search(q: npt.NDArray[np.uint8]) -> list[tuple[int, int]]:
            lims, _, labels = findex.range_search(q, THRESHOLD + 1)  # radius is exclusive
            return [(i, int(x)) for i in range(len(q)) for x in labels[lims[i] : lims[i + 1]]]

    elif name == "pytx-pdqindex":
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex

        hexes = [row.tobytes().hex() for row in codes]
        pindex = PDQIndex([(h, i) for i, h in enumerate(hexes)])
        del hexes
        result["build_s"] = time.perf_counter() - t0

        def search(q: npt.NDArray[np.uint8]) -> list[tuple[int, int]]:
            return [(0, int(m.metadata)) for m in pindex.query(q[0].tobytes().hex())]

    else:
        raise SystemExit(f"unknown contender {name}")
    times, pairs = [], []
    started = time.perf_counter()
    done = 0
    search(queries[:batch])  # warm-up (excluded from the timings, included in the pairs)
    while done < len(queries) and time.perf_counter() - started < budget:
        chunk = queries[done : done + batch]
        t = time.perf_counter()
        found = search(chunk)
        times.append((time.perf_counter() - t) / len(chunk))
        pairs += [(done + q, r) for q, r in found]
        done += len(chunk)
    result.update(
        times=times, pairs=pairs, queries=done, rss_delta=rss_bytes() - base, raw=codes.nbytes
    )
    Path(out).write_text(json.dumps(result))


# ---- the parent: run every contender, compare -------------------------------------------


def run_size(n: int, args: argparse.Namespace, tmp: Path) -> None:
    print(f"## {n:,} random PDQ hashes, threshold {THRESHOLD}")
    codes, queries, labels = make_data(n, args.per_distance, args.non_members)
    t0 = time.perf_counter()
    expected = truth(codes, queries)
    print(
        f"  reference scan: {len(queries)} queries, {len(expected)} true pairs, "
        f"{time.perf_counter() - t0:.1f} s"
    )
    del codes
    rows, ours_p99 = [], None
    results: dict[str, dict[str, Any]] = {}
    for name in args.contenders:
        if name == "pytx-pdqindex" and n > 1_000_000:
            continue
        out = tmp / f"{name}-{n}.json"
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--n",
            str(n),
            "--per-distance",
            str(args.per_distance),
            "--non-members",
            str(args.non_members),
            "--budget",
            str(args.budget),
            "--out",
            str(out),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"  {name}: unavailable ({last})")
            continue
        res = json.loads(out.read_text())
        results[name] = res
        ran = res["queries"]
        want = {p for p in expected if p[0] < ran}
        got = {tuple(p) for p in res["pairs"]}
        p50, p99 = summarize_ms(res["times"])
        if name == "ours":
            ours_p50, ours_p99 = p50, p99
        rows.append(
            [
                name + (f" ({res['layout']})" if "layout" in res else ""),
                ran,
                p50,
                p99,
                f"{100.0 * len(got & want) / max(1, len(want)):.2f}%",
                len(got - want),
                f"{res['rss_delta'] / 2**20:.0f} MB ({res['rss_delta'] / res['raw']:.2f}x)",
                "-" if res["build_s"] is None else f"{res['build_s']:.2f} s",
                "-" if res["open_s"] is None else f"{res['open_s'] * 1000:.1f} ms",
            ]
        )
    for row, name in zip(rows, [c for c in args.contenders if c in results], strict=True):
        p50, p99 = summarize_ms(results[name]["times"])
        row.append(f"{p50 / ours_p50:.1f}x / {p99 / ours_p99:.1f}x" if ours_p99 else "-")
    print_table(
        [
            "contender",
            "queries",
            "p50 ms",
            "p99 ms",
            "recall@31",
            "false",
            "RSS delta",
            "build",
            "open",
            "vs ours p50/p99",
        ],
        rows,
    )
    if "ours" in results:
        times = np.asarray(results["ours"]["times"]) * 1000
        lab = labels[: len(times)]
        print(
            "  ours by planted distance (ms p50/p99):",
            ", ".join(
                f"d={d}: {np.median(times[lab == d]):.2f}/{np.percentile(times[lab == d], 99):.2f}"
                for d in (0, 16, 31, 32, 40, -1)
                if np.any(lab == d)
            ),
        )
        print()


def run_real(data_dir: Path, tmp: Path) -> None:
    folder = data_dir / "threatexchange/pdq/data/reg-test-input"

    def load(name: str) -> npt.NDArray[np.uint8]:
        lines = (folder / name).read_text().split()
        return np.frombuffer(bytes.fromhex("".join(lines)), np.uint8).reshape(len(lines), 32)

    hay, needles = load("haystack.txt"), load("needles.txt")
    ids = np.arange(len(hay), dtype=np.int64)
    close = np.unpackbits(hay[None] ^ needles[:, None], axis=2).sum(axis=2) <= THRESHOLD
    expected = {(int(q), int(r)) for q, r in np.argwhere(close)}
    print(f"## reference haystack ({len(hay)}) x needles ({len(needles)}), {len(expected)} pairs")
    rows = []
    for substrings in (None, 16):
        index = HammingIndex.build(hay, ids, tmp / "hay.idx", substrings=substrings)
        times, got = [], set()
        for qi in range(len(needles)):
            t = time.perf_counter()
            hits = index.search(needles[qi : qi + 1], THRESHOLD)
            times.append(time.perf_counter() - t)
            got.update((qi, int(i)) for i in hits.ids)
        p50, p99 = summarize_ms(times)
        layout = f"{len(index.substring_bits)} tables" if index.substring_bits else "flat scan"
        rows.append([f"ours ({layout})", p50, p99, got == expected, len(got - expected)])
    hits = brute_force_search(hay, ids, needles, THRESHOLD)
    rows.append(
        [
            "numpy brute force",
            "-",
            "-",
            set(zip(hits.query.tolist(), hits.ids.tolist(), strict=True)) == expected,
            0,
        ]
    )
    print_table(["contender", "p50 ms", "p99 ms", "same pairs as brute force", "false"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 k only, < 60 s")
    parser.add_argument("--full", action="store_true", help="add 10 M hashes")
    parser.add_argument("--sizes", type=int, nargs="*", help="override the list sizes")
    parser.add_argument("--contenders", nargs="*", default=CONTENDERS, choices=CONTENDERS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--per-distance", type=int, default=24)
    parser.add_argument("--non-members", type=int, default=200)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of queries per run")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.per_distance, args.non_members, args.budget, args.out)
        return
    if args.quick:
        args.per_distance, args.non_members, args.budget = 6, 50, 4.0
    sizes = args.sizes or ([100_000] if args.quick else [100_000, 1_000_000])
    if args.full and not args.sizes:
        sizes.append(10_000_000)
    import faiss

    print_machine_info(
        [
            ("faiss", f"{faiss.__version__}, omp threads set to 1 in every worker"),
            ("load average", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ]
    )
    with tempfile.TemporaryDirectory(prefix="bench_lookup_") as tmp:
        for n in sizes:
            run_size(n, args, Path(tmp))
        run_real(find_data_dir(), Path(tmp))


if __name__ == "__main__":
    main()
