"""Shared helpers for the benchmark scripts: machine info, timing statistics, tables.

Every benchmark prints the machine and thread settings first, times each contender in the same
run, and reports medians and p99 so noisy machines still give comparable ratios.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def blas_threads() -> str:
    """numpy's BLAS and its thread count, via threadpoolctl when installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    pools = [f"{p.get('internal_api')}={p.get('num_threads')}" for p in threadpool_info()]
    return ", ".join(pools) or "none loaded"


def machine_info() -> list[tuple[str, str]]:
    import numpy as np

    rows = [
        ("python", sys.version.split()[0]),
        ("platform", platform.platform()),
        ("processor", platform.processor() or platform.machine()),
        ("os.cpu_count", str(os.cpu_count())),
    ]
    if hasattr(os, "sched_getaffinity"):
        rows.append(("usable cpus", str(len(os.sched_getaffinity(0)))))
    rows.append(("numpy", np.__version__))
    rows.append(("BLAS threads", blas_threads()))
    for name in THREAD_ENV_VARS:
        rows.append((name, os.environ.get(name, "(unset)")))
    return rows


def print_machine_info(extra: Sequence[tuple[str, str]] = ()) -> None:
    print("## Machine")
    for key, value in [*machine_info(), *extra]:
        print(f"  {key:<22} {value}")
    print()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) without numpy, exact for small samples."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def time_calls(
    fn: Callable[[], object], *, repeat: int, warmup: int = 1, budget_s: float | None = None
) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls after ``warmup`` calls; stops early past budget."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    started = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - started > budget_s and len(out) >= 3:
            break
    return out


def summarize_ms(samples: Sequence[float]) -> tuple[float, float]:
    """(median, p99) in milliseconds."""
    return statistics.median(samples) * 1000.0, percentile(samples, 99) * 1000.0


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain-text table, markdown-compatible."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def find_data_dir() -> Path:
    """The shared test media (same rule as tests/conftest.py)."""
    env = os.environ.get("UPLOADSCAN_TEST_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    for candidate in candidates:
        if (candidate / "MANIFEST.txt").is_file():
            return candidate
    raise SystemExit("test media not found: set UPLOADSCAN_TEST_DATA")
