"""Batch jobs on Dask: back-catalogue scan scaling and retroactive matching, against one process.

1. Backfill: a catalogue of real images (symlinks to the shared test media, each listed
   several times under different names) scanned against a block list of 100 k random PDQ
   hashes plus three reference hashes, on a LocalCluster of 1 and then 2 worker processes
   (started and warmed before the clock starts; one thread each; task size chosen by
   ``backfill``). Reported: items/s, scaling efficiency (rate with 2 / (2 x rate with 1)).
2. Retro: a 10 k-entry delta (one synced list of random PDQ hashes) matched against N recorded
   PDQ hashes (default 1 M and 10 M; ``--quick`` 100 k) written as Parquet shards (random
   codes, plus 100 planted copies of delta hashes with 1-12 bits flipped, 10 at exactly the
   threshold (31 bits) and 10 just past it (32 bits), so the answer is known: the 110 within
   the threshold, nothing else). Each size runs in this process (no Dask) and on a fresh
   LocalCluster of ``--workers`` processes; at the smallest size, one-threaded faiss
   ``IndexBinaryFlat`` brute force over the same hashes is the exactness reference and a
   speed peer. Reported: wall seconds, hashes/s, CPU seconds and the cores the run obtained
   (CPU / wall: on a shared machine, the scheduler's share), peak RSS, and the ratios.

Exactness is asserted (the run fails otherwise): retro names exactly the planted ids within
the threshold, in process and on Dask, and faiss brute force finds the same rows.

Usage: python benchmarks/bench_batch.py [--quick] [--recorded N[,N...]] [--workers N]
       [--copies N] [--skip-backfill] [--skip-retro] [--results FILE] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import find_data_dir, print_machine_info, print_table

from uploadscan import Scanner
from uploadscan.batch import backfill, retro
from uploadscan.batch._dask import DaskRunner, open_runner

DELTA = 10_000
PLANTED = 100  # 1-12 bits from a delta hash: must be found
THRESHOLD = 31  # the default PDQ threshold the list uses
AT_THRESHOLD = 10  # exactly 31 bits away: must be found
PAST_THRESHOLD = 10  # exactly 32 bits away: must not be
SHARD_ROWS = 1_000_000
GOAL_RETRO_RATIO = 1.6
GOAL_RETRO_10M_SECONDS = 25.0
GOAL_WORKER_MB = 1024.0
GOAL_BACKFILL_EFFICIENCY = 0.8


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Peak resident memory of this process image (VmHWM: unlike ``ru_maxrss`` it is not
    inherited from the process that forked a Dask worker, and it can be reset)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start this process's peak-memory count afresh (Linux ``clear_refs``; no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def warm_imports() -> None:
    """What every process pays once, whatever the job: the batch modules (already imported in
    this process, 0.3 CPU-s in a fresh one), pyarrow, and the pandas that pyarrow imports on
    its first array built from Python values (0.5 CPU-s)."""
    import pyarrow as pa
    import pyarrow.parquet

    import uploadscan.batch._parquet
    import uploadscan.batch._retro  # noqa: F401

    pa.array([0])


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


@dataclass
class Cluster:
    """A started LocalCluster and its workers' CPU clock (for 'cores obtained')."""

    runner: DaskRunner

    def cpu(self) -> float:
        return float(sum(self.runner.client.run(cpu_seconds).values()))

    def peaks(self) -> list[float]:
        return sorted(float(v) for v in self.runner.client.run(rss_mb).values())


@contextmanager
def cluster(workers: int) -> Iterator[Cluster]:
    with open_runner(workers=workers) as runner:
        assert isinstance(runner, DaskRunner)
        runner.client.run(warm_imports)
        yield Cluster(runner)


@dataclass
class Timed:
    seconds: float
    cpu: float
    result: Any

    @property
    def cores(self) -> float:
        return self.cpu / self.seconds


def timed(fn: Callable[[], Any], other_cpu: Callable[[], float] | None = None) -> Timed:
    """Wall and CPU seconds of ``fn()``: this process's CPU plus ``other_cpu`` (workers')."""
    other = other_cpu() if other_cpu else 0.0
    cpu = cpu_seconds()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu + ((other_cpu() - other) if other_cpu else 0.0)
    return Timed(seconds, cpu, result)


def random_pdq_list(path: Path, count: int, rng: np.random.Generator) -> np.ndarray:
    codes = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    path.write_text("".join(f"pdq {c.tobytes().hex()}\n" for c in codes))
    return codes


def reference_pdq(path: Path) -> str:
    import pdqhash
    from PIL import Image

    bits, _ = pdqhash.compute(np.asarray(Image.open(path).convert("RGB")))
    return bytes(np.packbits(bits.astype(np.uint8))).hex()


# ---------------------------------------------------------------------- backfill


def bench_backfill(work: Path, copies: int, summary: list[tuple[str, str, str, str]]) -> None:
    data = find_data_dir()
    images = sorted((data / "kodak").glob("*.png"))
    catalogue, warm_dir = work / "catalogue", work / "warm"
    catalogue.mkdir()
    warm_dir.mkdir()
    for image in images:
        (warm_dir / image.name).symlink_to(image)
        for copy in range(copies):
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
    rates: dict[int, float] = {}
    cpu_per_item: dict[int, float] = {}
    for workers in (1, 2):
        with cluster(workers) as active, Scanner.open(home, audit=False) as scanner:
            # Warm the workers (each opens its Scanner once per process) outside the clock.
            warm = backfill(
                scanner,
                str(warm_dir),
                runner=active.runner,
                batch_size=1,
                checkpoint=work / f"warm-{workers}.sqlite3",
                record=False,
                record_audit=False,
            )
            assert warm.scanned == len(images)
            before = load()
            run = timed(
                partial(
                    backfill,
                    scanner,
                    str(catalogue),
                    runner=active.runner,
                    checkpoint=work / f"run-{workers}.sqlite3",
                ),
                active.cpu,
            )
            result = run.result
            assert result.scanned == total and result.flagged == 3 * copies, result
            rates[workers] = total / run.seconds
            cpu_per_item[workers] = run.cpu / total
            rows.append(
                (
                    workers,
                    total,
                    result.tasks,
                    f"{run.seconds:.2f}",
                    f"{rates[workers]:.1f}",
                    f"{run.cpu:.1f}",
                    f"{run.cores:.2f}",
                    " / ".join(f"{p:.0f}" for p in active.peaks()),
                    f"{before} -> {load()}",
                )
            )
    efficiency = rates[2] / (2 * rates[1])
    print(f"## Backfill: {len(images)} Kodak PNGs x {copies} (768x512), 100 k-entry PDQ list")
    print_table(
        [
            "workers",
            "items",
            "tasks",
            "seconds",
            "items/s",
            "CPU s (all)",
            "cores obtained",
            "worker peak RSS MB",
            "load avg",
        ],
        rows,
    )
    print(f"  scaling efficiency 1 -> 2 workers: {efficiency:.2f}")
    print(
        f"  CPU per item, 2 workers / 1 worker: {cpu_per_item[2] / cpu_per_item[1]:.2f} "
        "(1.00 = no parallel overhead; the wall-clock efficiency also depends on the cores "
        "the machine gave each run)"
    )
    print()
    summary.append(
        (
            "backfill scaling efficiency, 1 -> 2 workers",
            f">= {GOAL_BACKFILL_EFFICIENCY}",
            f"{efficiency:.2f}",
            "yes" if efficiency >= GOAL_BACKFILL_EFFICIENCY else "no",
        )
    )


# ---------------------------------------------------------------------- retro


def flipped(code: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    unpacked = np.unpackbits(code)
    unpacked[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked)


def write_recorded(
    directory: Path, count: int, delta: np.ndarray, rng: np.random.Generator, shard_rows: int
) -> tuple[set[str], set[int]]:
    """Parquet shards of ``count`` random recorded hashes with planted near-copies of delta
    hashes; returns the content ids within the threshold and their row numbers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from uploadscan.batch._parquet import schema

    directory.mkdir(parents=True)
    plants = PLANTED + AT_THRESHOLD + PAST_THRESHOLD
    planted_rows = rng.choice(count, plants, replace=False)
    sources = rng.choice(delta.shape[0], plants, replace=False)
    flips = [
        *(int(b) for b in rng.integers(1, 13, PLANTED)),
        *[THRESHOLD] * AT_THRESHOLD,
        *[THRESHOLD + 1] * PAST_THRESHOLD,
    ]
    planted = {
        row: flipped(delta[src], bits, rng)
        for row, src, bits in zip(planted_rows.tolist(), sources.tolist(), flips, strict=True)
    }
    within = {row for row, bits in zip(planted_rows.tolist(), flips, strict=True) if bits <= 31}
    for number, start in enumerate(range(0, count, shard_rows)):
        n = min(shard_rows, count - start)
        codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        for row, code in planted.items():
            if start <= row < start + n:
                codes[row - start] = code
        table = pa.Table.from_arrays(
            [
                pa.array([f"c{i}" for i in range(start, start + n)], pa.string()),
                pa.array(np.full(n, 1.7e9)),
                pa.array(["image/jpeg"] * n, pa.string()),
                pa.nulls(n, pa.binary(16)),
                pa.nulls(n, pa.binary(32)),
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
    return {f"c{row}" for row in within}, within


def faiss_brute_force(directory: Path, delta: np.ndarray) -> Timed:
    """One-threaded faiss ``IndexBinaryFlat`` range search over every recorded hash (the
    reference for exactness): rows within the threshold of any delta hash."""
    import faiss
    import pyarrow.parquet as pq

    faiss.omp_set_num_threads(1)
    index = faiss.IndexBinaryFlat(256)
    index.add(delta)

    def run() -> set[int]:
        found: set[int] = set()
        first = 0
        for path in sorted(directory.glob("part-*.parquet")):
            column = pq.read_table(path, columns=["pdq"]).column("pdq").combine_chunks()
            codes = np.frombuffer(column.buffers()[1], np.uint8).reshape(-1, 32)
            lims, _, _ = index.range_search(codes, THRESHOLD + 1)  # exclusive radius
            found.update((np.flatnonzero(np.diff(lims)) + first).tolist())
            first += codes.shape[0]
        return found

    return timed(run)


def bench_retro(
    work: Path,
    recorded: int,
    workers: int,
    with_faiss: bool,
    summary: list[tuple[str, str, str, str]],
) -> None:
    rng = np.random.default_rng(11)
    home = work / f"home-retro-{recorded}"
    list_file = work / f"delta-{recorded}.txt"
    delta = random_pdq_list(list_file, DELTA, rng)
    # At least 4 shards per worker so the cluster is busy; at most 1 M rows per shard.
    shard_rows = min(SHARD_ROWS, max(10_000, recorded // (4 * workers)))
    directory = work / f"recorded-{recorded}"
    generate = timed(lambda: write_recorded(directory, recorded, delta, rng, shard_rows))
    planted, planted_rows = generate.result
    rows = []
    with Scanner.open(home, audit=False) as scanner:
        scanner.add_list("new", kind="block", source=str(list_file))
        assert all(r.ok for r in scanner.sync())

        def job(runner: DaskRunner | None = None) -> Any:
            return retro(
                scanner,
                since_version=0,
                parquet=directory,
                runner=runner,
                workers=0,
                record_audit=False,
            )

        warm_imports()
        before = load()
        reset_peak()
        inline = timed(job)
        rows.append(("in process (no Dask)", inline, f"{rss_mb():.0f}", f"{before} -> {load()}"))
        with cluster(workers) as active:
            before = load()
            dask = timed(lambda: job(active.runner), active.cpu)
            peaks = active.peaks()
        rows.append(
            (
                f"{workers} Dask workers",
                dask,
                " / ".join(f"{p:.0f}" for p in peaks),
                f"{before} -> {load()}",
            )
        )
    reference = None
    if with_faiss:
        before = load()
        reference = faiss_brute_force(directory, delta)
        rows.append(("faiss IndexBinaryFlat, 1 thread", reference, "-", f"{before} -> {load()}"))
    for name, run in (("in process", inline), ("Dask", dask)):
        found = {v.content_id for v in run.result.verdicts}
        if found != planted or run.result.candidates != len(planted):
            raise SystemExit(
                f"retro {name} at {recorded:,}: missed {sorted(planted - found)[:5]}, "
                f"extra {sorted(found - planted)[:5]}, {run.result.candidates} candidates"
            )
    if reference is not None and reference.result != planted_rows:
        raise SystemExit(f"faiss brute force disagrees: {len(reference.result)} rows")
    print(
        f"## Retro: {DELTA:,}-entry delta vs {recorded:,} recorded PDQ hashes "
        f"({dask.result.shards} Parquet shards; generated in {generate.seconds:.0f} s)"
    )
    print_table(
        [
            "run",
            "wall s",
            "recorded hashes/s",
            "CPU s (all)",
            "cores obtained",
            "peak RSS MB",
            "load avg",
        ],
        [
            (
                name,
                f"{run.seconds:.2f}",
                f"{recorded / run.seconds:,.0f}",
                f"{run.cpu:.1f}",
                f"{run.cores:.2f}",
                peak,
                avg,
            )
            for name, run, peak, avg in rows
        ],
    )
    ratio = inline.seconds / dask.seconds
    print(f"  {workers} workers vs in process: {ratio:.2f}x faster (wall clock)")
    print(
        f"  CPU seconds, {workers} workers / in process: {dask.cpu / inline.cpu:.2f} "
        f"(1.00 = no parallel overhead); cores obtained {dask.cores:.2f} vs {inline.cores:.2f}"
    )
    print(
        f"  exact: {len(planted)} planted ids within {THRESHOLD} bits found in process and on "
        f"Dask, none of the {PAST_THRESHOLD} at {THRESHOLD + 1} bits"
        + (", same rows as faiss brute force" if reference is not None else "")
    )
    print()
    label = f"{recorded / 1e6:g} M" if recorded >= 1_000_000 else f"{recorded / 1e3:g} k"
    summary.append(
        (
            f"retro {label}: {workers} workers vs in process",
            f">= {GOAL_RETRO_RATIO}x",
            f"{ratio:.2f}x",
            "yes" if ratio >= GOAL_RETRO_RATIO else "no",
        )
    )
    if recorded == 10_000_000:
        summary.append(
            (
                f"retro 10 M on {workers} workers, wall",
                f"<= {GOAL_RETRO_10M_SECONDS:.0f} s",
                f"{dask.seconds:.1f} s",
                "yes" if dask.seconds <= GOAL_RETRO_10M_SECONDS else "no",
            )
        )
        summary.append(
            (
                "retro 10 M, worker peak RSS",
                f"<= {GOAL_WORKER_MB:.0f} MB",
                f"{max(peaks):.0f} MB",
                "yes" if max(peaks) <= GOAL_WORKER_MB else "no",
            )
        )
    summary.append((f"retro {label}: exactly the planted ids", "yes", "yes", "yes"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 k recorded hashes")
    parser.add_argument(
        "--recorded", default=None, help="recorded hashes, comma-separated sizes (1000000,...)"
    )
    parser.add_argument("--copies", type=int, default=None, help="catalogue copies of 24 images")
    parser.add_argument("--workers", type=int, default=2, help="workers for the retro job")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--skip-retro", action="store_true")
    parser.add_argument("--no-faiss", action="store_true", help="skip the faiss peer")
    parser.add_argument("--results", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if args.recorded:
        sizes = [int(s) for s in args.recorded.split(",")]
    else:
        sizes = [100_000] if args.quick else [1_000_000, 10_000_000]
    copies = args.copies or (2 if args.quick else 8)
    out = io.StringIO()
    tee = _Tee(sys.stdout, out)
    summary: list[tuple[str, str, str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="bench-batch-", dir=args.workdir))
    try:
        with redirect_stdout(tee):
            command = " ".join(["python benchmarks/bench_batch.py", *(argv or sys.argv[1:])])
            print(f"# {command}")
            print()
            print(time.strftime("Run %Y-%m-%d %H:%M %Z", time.gmtime()))
            print()
            print_machine_info(
                [
                    ("dask workers", "LocalCluster, processes, 1 thread each"),
                    ("load avg at start", load()),
                ]
            )
            if not args.skip_backfill:
                bench_backfill(work, copies, summary)
            if not args.skip_retro:
                for size in sizes:
                    bench_retro(
                        work, size, args.workers, not args.no_faiss and size == sizes[0], summary
                    )
                    shutil.rmtree(work / f"recorded-{size}", ignore_errors=True)
            print("## Goals")
            print_table(["measure", "goal", "measured", "met"], summary)
            print(f"  load average at the end: {load()} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.results is not None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(out.getvalue())


class _Tee(io.TextIOBase):
    """Writes to several streams (the terminal and the report)."""

    def __init__(self, *streams: Any) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
