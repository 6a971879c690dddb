"""Run every benchmark script and collect their output into one report.

    python benchmarks/run_all.py            # every bench_*.py at full size
    python benchmarks/run_all.py --quick    # every script's --quick mode, < 5 minutes overall
    python benchmarks/run_all.py --only detection --quick -- --photos 3   # args after -- go to
                                                                          # each script

Each ``benchmarks/bench_*.py`` runs as its own subprocess, one after another (running them side
by side would make their timings measure each other), with a per-script timeout. A script that
fails or times out is recorded and the rest still run. The report, benchmarks/results/REPORT.md,
starts with the machine, library versions and thread settings, then each script's stdout as
printed (its tables are markdown) and links to the plots the scripts wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import THREAD_ENV_VARS, blas_threads

HERE = Path(__file__).resolve().parent

#: Report order for the scripts we know about; any other bench_*.py runs after them.
ORDER = ("hash", "lookup", "scan", "sync", "video", "detection", "serve")
VERSIONS = (
    "uploadscan",
    "numpy",
    "pillow",
    "faiss-cpu",
    "pdqhash",
    "av",
    "imagehash",
    "threatexchange",
    "perception",
    "vpdq",
    "opencv-contrib-python-headless",
    "matplotlib",
    "threadpoolctl",
)
# bench_detection --quick spawns workers that import OpenCV, faiss and pandas and scans with
# an own list: about a minute on two cores shared with other work.
QUICK_TIMEOUT_S = 120.0
QUICK_BUDGET_S = 290.0  # the whole --quick run stays under 5 minutes
FULL_TIMEOUT_S = 1800.0


@dataclass
class Outcome:
    name: str
    status: str  # ok, failed (rc N), timeout, skipped
    seconds: float
    stdout: str
    note: str = ""


def discover() -> list[Path]:
    scripts = sorted(HERE.glob("bench_*.py"))

    def key(path: Path) -> tuple[int, str]:
        short = path.stem.removeprefix("bench_")
        return (ORDER.index(short) if short in ORDER else len(ORDER), short)

    return sorted(scripts, key=key)


def accepts_quick(script: Path) -> bool:
    """Whether the script declares a --quick option (read from its source, not by running it)."""
    return '"--quick"' in script.read_text(encoding="utf-8")


def run_script(
    script: Path, args: list[str], timeout: float, env: dict[str, str]
) -> tuple[str, float, str, str]:
    """Run one benchmark in its own process group, so that a timeout also stops what it
    started (a service, a Dask cluster) instead of leaving it to load the next benchmarks."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return "timeout", time.perf_counter() - started, out or "", err or ""
    finally:
        with contextlib.suppress(ProcessLookupError):  # anything the script left behind
            os.killpg(proc.pid, signal.SIGKILL)
    status = "ok" if proc.returncode == 0 else f"failed (rc {proc.returncode})"
    return status, time.perf_counter() - started, out, err


def machine() -> list[tuple[str, str]]:
    import platform

    cpu = platform.processor() or platform.machine()
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    rows = [
        ("CPU", cpu),
        ("cores (os.cpu_count)", str(os.cpu_count())),
        ("usable cores", str(len(os.sched_getaffinity(0)))),
        ("memory", memory),
        ("platform", platform.platform()),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]
    return rows


def versions() -> list[tuple[str, str]]:
    rows = [("python", sys.version.split()[0])]
    for name in VERSIONS:
        try:
            rows.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return rows


def threads() -> list[tuple[str, str]]:
    rows = [(name, os.environ.get(name, "(unset)")) for name in THREAD_ENV_VARS]
    rows.append(("numpy BLAS pools", blas_threads()))
    try:
        import faiss

        rows.append(("faiss omp_get_max_threads", str(faiss.omp_get_max_threads())))
    except ImportError:
        rows.append(("faiss", "not installed"))
    return rows


def git_commit() -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=HERE.parent,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=HERE.parent,
            check=False,
        )
    except OSError:
        return "unknown"
    return proc.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def kv_table(rows: list[tuple[str, str]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def demote(text: str) -> str:
    """Script headings become sub-headings of the script's section."""
    return "\n".join("##" + line if line.startswith("#") else line for line in text.splitlines())


def write_report(
    path: Path, outcomes: list[Outcome], quick: bool, started: datetime.datetime, total: float
) -> None:
    since = started.timestamp() - 1
    plots = sorted(p for p in path.parent.glob("*.png") if p.stat().st_mtime >= since)
    parts = [
        "# uploadscan benchmark report",
        "",
        f"Generated {started:%Y-%m-%d %H:%M} UTC by `python benchmarks/run_all.py"
        f"{' --quick' if quick else ''}` in {total:.0f} s; commit {git_commit()}.",
        ""
        if not quick
        else "Quick mode: every script ran its smoke-sized --quick run; the "
        "numbers show the shape of the results, not the quality bars.",
        "",
        "## Machine",
        kv_table(machine()),
        "## Versions",
        kv_table(versions()),
        "## Threads",
        kv_table(threads()),
        "## Summary",
        "| benchmark | status | seconds | note |",
        "|---|---|---|---|",
        *(f"| {o.name} | {o.status} | {o.seconds:.0f} | {o.note} |" for o in outcomes),
        "",
    ]
    for outcome in outcomes:
        parts += [f"## {outcome.name}", ""]
        if outcome.note:
            parts += [f"_{outcome.note}_", ""]
        parts += [demote(outcome.stdout.rstrip()) or "(no output)", ""]
    if plots:
        parts += ["## Plots written by this run", ""]
        parts += [f"### {p.stem}\n\n![{p.stem}]({p.name})\n" for p in plots]
    path.write_text("\n".join(parts).rstrip() + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each script's --quick mode")
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per script")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    started_at = datetime.datetime.now(datetime.UTC)
    started = time.perf_counter()
    timeout = args.timeout or (QUICK_TIMEOUT_S if args.quick else FULL_TIMEOUT_S)
    args.results.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "UPLOADSCAN_BENCH_RESULTS": str(args.results.resolve())}
    env.setdefault("PYTHONUNBUFFERED", "1")

    scripts = discover()
    if args.only:
        wanted = {o.removeprefix("bench_").removesuffix(".py") for o in args.only}
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    outcomes: list[Outcome] = []
    for script in scripts:
        name = script.stem
        if args.quick and not accepts_quick(script):
            note = "has no --quick option: not run in quick mode (run it directly)"
            outcomes.append(Outcome(name, "skipped", 0.0, "", note))
            print(f"{name}: skipped ({note})", flush=True)
            continue
        budget = timeout
        if args.quick:
            remaining = QUICK_BUDGET_S - (time.perf_counter() - started)
            budget = min(timeout, remaining)
            if remaining < 5:
                outcomes.append(Outcome(name, "skipped", 0.0, "", "quick-run time budget spent"))
                continue
        script_args = (["--quick"] if args.quick else []) + passthrough
        print(f"{name}: running (timeout {budget:.0f} s)...", flush=True)
        status, seconds, out, err = run_script(script, script_args, budget, env)
        note = ""
        if status == "timeout":
            note = f"stopped after {budget:.0f} s; output so far below"
        elif status != "ok":
            tail = "\n".join(err.strip().splitlines()[-15:])
            out += f"\n\nstderr (last lines):\n\n```\n{tail}\n```\n"
            note = "failed; stderr tail below"
        outcomes.append(Outcome(name, status, seconds, out, note))
        print(f"{name}: {status} in {seconds:.0f} s", flush=True)

    report = args.results / "REPORT.md"
    write_report(report, outcomes, args.quick, started_at, time.perf_counter() - started)
    print(f"wrote {report}")
    return 0 if all(o.status in ("ok", "skipped") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
