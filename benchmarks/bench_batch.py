"""Batch jobs on Dask: back-catalogue scan throughput and retroactive matching at scale.

1. Backfill: a catalogue of real images (symlinks to the shared test media, each listed
   several times under different names) scanned against a block list of 100 k random PDQ
   hashes plus three reference hashes, on a LocalCluster of 1 and then 2 worker processes
   (started before the clock starts; one thread each). Reported: items/s, per-worker rate and
   scaling efficiency (rate with 2 / (2 x rate with 1)).
2. Retro: a 10 k-entry delta (one synced list of random PDQ hashes) matched against N recorded
   PDQ hashes (default 10 M; ``--quick`` 100 k) written directly as Parquet shards of 1 M rows
   (random codes, plus 100 planted copies of delta hashes with 1-12 bits flipped, so the
   result has a known answer). Reported: wall seconds, recorded hashes per second per worker,
   peak RSS of the client and of each worker, and whether exactly the planted ids came back.

Usage: python benchmarks/bench_batch.py [--quick] [--recorded N] [--workdir DIR]
       [--skip-backfill] [--skip-retro]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import find_data_dir, print_machine_info, print_table

from uploadscan import Scanner
from uploadscan.batch import backfill, retro
from uploadscan.batch._dask import DaskRunner, open_runner

DELTA = 10_000
INLINE_MAX = 1_000_000  # the in-process baseline only runs up to this many hashes
PLANTED = 100
SHARD_ROWS = 1_000_000


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_peaks(runner: DaskRunner) -> list[float]:
    peaks = runner.client.run(rss_mb)
    return sorted(float(v) for v in peaks.values())


def random_pdq_list(path: Path, count: int, rng: np.random.Generator) -> np.ndarray:
    codes = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    path.write_text("".join(f"pdq {c.tobytes().hex()}\n" for c in codes))
    return codes


def reference_pdq(path: Path) -> str:
    import pdqhash
    from PIL import Image

    bits, _ = pdqhash.compute(np.asarray(Image.open(path).convert("RGB")))
    return bytes(np.packbits(bits.astype(np.uint8))).hex()


def bench_backfill(work: Path, copies: int) -> None:
    data = find_data_dir()
    images = sorted((data / "kodak").glob("*.png"))
    catalogue = work / "catalogue"
    catalogue.mkdir()
    for copy in range(copies):
        for image in images:
            (catalogue / f"{copy:02d}-{image.name}").symlink_to(image)
    total = copies * len(images)
    rng = np.random.default_rng(7)
    list_file = work / "block.txt"
    random_pdq_list(list_file, 100_000, rng)
    with list_file.open("a") as fh:
        for name in ("kodim03.png", "kodim07.png", "kodim15.png"):
            fh.write(f"pdq {reference_pdq(data / 'kodak' / name)}\n")
    home = work / "home-backfill"
    with Scanner.open(home, audit=False) as scanner:
        scanner.add_list("block", kind="block", source=str(list_file))
        assert all(r.ok for r in scanner.sync())
    rows = []
    rates = {}
    for workers in (1, 2):
        with open_runner(workers=workers) as runner, Scanner.open(home, audit=False) as scanner:
            # Warm the workers (their Scanner opens once per process) outside the clock.
            runner_warm = backfill(
                scanner,
                str(catalogue),
                runner=runner,
                batch_size=1,
                checkpoint=work / f"warm-{workers}.sqlite3",
                record=False,
                record_audit=False,
            )
            assert runner_warm.scanned == total
            started = time.perf_counter()
            cpu = time.process_time()
            result = backfill(
                scanner,
                str(catalogue),
                runner=runner,
                batch_size=4,
                checkpoint=work / f"run-{workers}.sqlite3",
            )
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
            assert result.scanned == total and result.flagged == 3 * copies, result
            rates[workers] = total / seconds
            peaks = worker_peaks(runner) if isinstance(runner, DaskRunner) else []
            rows.append(
                (
                    workers,
                    total,
                    f"{seconds:.2f}",
                    f"{rates[workers]:.1f}",
                    f"{rates[workers] / workers:.1f}",
                    f"{cpu:.2f}",
                    " / ".join(f"{p:.0f}" for p in peaks),
                )
            )
    print("## Backfill (24 Kodak PNGs x copies, 768x512; 100 k-entry PDQ list + 3 listed)")
    print_table(
        [
            "workers",
            "items",
            "seconds",
            "items/s",
            "items/s/worker",
            "client CPU s",
            "worker peak RSS MB",
        ],
        rows,
    )
    print(f"  scaling efficiency 2 workers: {rates[2] / (2 * rates[1]):.2f}")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print()


def write_recorded(
    directory: Path, count: int, delta: np.ndarray, rng: np.random.Generator, shard_rows: int
) -> set[str]:
    """Parquet shards of ``count`` random recorded hashes with planted near-copies of delta
    hashes; returns the planted content ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from uploadscan.batch._parquet import schema

    directory.mkdir(parents=True)
    planted_rows = rng.choice(count, PLANTED, replace=False)
    planted_src = rng.choice(delta.shape[0], PLANTED, replace=False)
    planted = {}
    for row, src in zip(planted_rows.tolist(), planted_src.tolist(), strict=True):
        code = np.unpackbits(delta[src])
        flip = rng.choice(256, int(rng.integers(1, 13)), replace=False)
        code[flip] ^= 1
        planted[row] = np.packbits(code)
    ids: set[str] = set()
    for number, start in enumerate(range(0, count, shard_rows)):
        n = min(shard_rows, count - start)
        codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        for row, code in planted.items():
            if start <= row < start + n:
                codes[row - start] = code
                ids.add(f"c{row}")
        content = pa.array([f"c{i}" for i in range(start, start + n)], pa.string())
        null16 = pa.nulls(n, pa.binary(16))
        null32 = pa.nulls(n, pa.binary(32))
        table = pa.Table.from_arrays(
            [
                content,
                pa.array(np.full(n, 1.7e9)),
                pa.array(["image/jpeg"] * n, pa.string()),
                null16,
                null32,
                pa.array(np.full(n, -1, np.int32)),
                pa.array(np.zeros(n, np.int16)),
                pa.nulls(n, pa.float64()),
                pa.array(np.full(n, 100, np.int16)),
                pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(32), n, [None, pa.py_buffer(codes.tobytes())]
                ),
            ],
            schema=schema(),
        )
        pq.write_table(table, directory / f"part-{number:05d}.parquet", compression="zstd")
    return ids


def bench_retro(work: Path, recorded: int, workers: int) -> None:
    rng = np.random.default_rng(11)
    home = work / "home-retro"
    list_file = work / "delta.txt"
    delta = random_pdq_list(list_file, DELTA, rng)
    started = time.perf_counter()
    # At least 4 shards per worker so the cluster is busy; at most 1 M rows per shard.
    shard_rows = min(SHARD_ROWS, max(10_000, recorded // (4 * workers)))
    planted = write_recorded(work / "recorded", recorded, delta, rng, shard_rows)
    generate = time.perf_counter() - started
    with Scanner.open(home, audit=False) as scanner:
        scanner.add_list("new", kind="block", source=str(list_file))
        assert all(r.ok for r in scanner.sync())
        inline_seconds = None
        if recorded <= INLINE_MAX:
            started = time.perf_counter()
            inline = retro(
                scanner, since_version=0, parquet=work / "recorded", workers=0, record_audit=False
            )
            inline_seconds = time.perf_counter() - started
            assert {v.content_id for v in inline.verdicts} == planted
        with open_runner(workers=workers) as runner:
            assert isinstance(runner, DaskRunner)
            base_client = rss_mb()
            started = time.perf_counter()
            result = retro(
                scanner,
                since_version=0,
                parquet=work / "recorded",
                runner=runner,
                record_audit=False,
            )
            seconds = time.perf_counter() - started
            peaks = worker_peaks(runner)
    found = {v.content_id for v in result.verdicts}
    print(
        f"## Retro: {DELTA:,}-entry delta vs {recorded:,} recorded PDQ hashes "
        f"({result.shards} Parquet shards, {workers} workers)"
    )
    print_table(
        ["measure", "value"],
        [
            ("generate shards (s)", f"{generate:.1f}"),
            (
                "in-process, no Dask: wall (s), hashes/s",
                "-"
                if inline_seconds is None
                else f"{inline_seconds:.2f}, {recorded / inline_seconds:,.0f}",
            ),
            ("retro wall (s)", f"{seconds:.2f}"),
            ("recorded hashes/s (all workers)", f"{recorded / seconds:,.0f}"),
            ("recorded hashes/s per worker", f"{recorded / seconds / workers:,.0f}"),
            ("candidates / verdicts", f"{result.candidates} / {len(result.verdicts)}"),
            ("planted found exactly", str(found == planted)),
            ("client peak RSS MB (before job)", f"{rss_mb():.0f} ({base_client:.0f})"),
            ("worker peak RSS MB", " / ".join(f"{p:.0f}" for p in peaks)),
            ("load average (1 min)", f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"),
        ],
    )
    print()
    if found != planted:
        raise SystemExit(
            f"retro missed {sorted(planted - found)[:5]} / extra {sorted(found - planted)[:5]}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 k recorded hashes")
    parser.add_argument("--recorded", type=int, default=None)
    parser.add_argument("--copies", type=int, default=None, help="catalogue copies of 24 images")
    parser.add_argument("--workers", type=int, default=2, help="workers for the retro job")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--skip-retro", action="store_true")
    args = parser.parse_args(argv)
    recorded = args.recorded or (100_000 if args.quick else 10_000_000)
    copies = args.copies or (2 if args.quick else 8)
    print_machine_info([("dask workers", "LocalCluster, processes, 1 thread each")])
    work = Path(tempfile.mkdtemp(prefix="bench-batch-", dir=args.workdir))
    try:
        if not args.skip_backfill:
            bench_backfill(work, copies)
        if not args.skip_retro:
            bench_retro(work, recorded, args.workers)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
