"""Smoke tests for the benchmark runner and the detection benchmark.

The benchmarks themselves are plain scripts; these tests only check that the one-command report
still runs end to end on tiny inputs and that what it writes is sane (the identity and dihedral
copies of a listed photo are detected, distinct photos are not confused, plots are written), so
a refactor of the library cannot silently break the published numbers' pipeline. The detection
benchmark's originals are the extended corpus's photos; the runner itself needs no media.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TRANSFORMS = ["identity (PNG)", "mirror h", "rotate 90", "jpeg q50", "crop centre 10%"]


def _run(
    args: list[str], cwd: Path, data_dir: Path | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if data_dir is not None:
        env["UPLOADSCAN_TEST_DATA"] = str(data_dir)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )


def _table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("|") and not line.startswith("|-"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.extended
def test_run_all_quick_detection(tmp_path: Path, data_dir: Path) -> None:
    results = tmp_path / "results"
    proc = _run(
        [
            str(BENCHMARKS / "run_all.py"),
            "--quick",
            "--only",
            "detection",
            "--results",
            str(results),
            "--",
            "--photos",
            "3",
            "--transforms",
            *TRANSFORMS,
        ],
        BENCHMARKS.parent,
        data_dir,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    report = (results / "REPORT.md").read_text()
    for heading in ("## Machine", "## Versions", "## Threads", "## Summary", "## bench_detection"):
        assert heading in report
    assert "| bench_detection | ok |" in report
    assert "pdqhash" in report and "faiss-cpu" in report

    per_transform = _table_rows((results / "detection_per_transform_quick.md").read_text())
    header = per_transform["transform"]
    ours = header.index("uploadscan")
    for name in ("identity (PNG)", "mirror h", "rotate 90", "jpeg q50"):
        assert per_transform[name][ours] == "100.0%", (name, per_transform[name])
    median_crop = int(per_transform["crop centre 10%"][header.index("median")])
    assert 0 <= median_crop <= 256

    summary = (results / "detection_quick.md").read_text()
    targets = _table_rows(summary.split("## Targets", 1)[1])
    assert targets["false matches, distinct originals"][-1] == "met"
    assert targets["mirrors and 90/180/270 rotations"][-1] == "met"

    # The crop-robust peers and the hard negatives are in the same run. The own list runs
    # where the "sift" hash type is registered and is otherwise skipped with its reason.
    assert "## False matches: distractors and hard negatives" in summary
    assert "## Crop-robust goals: recall per goal family" in summary
    identity = per_transform["identity (PNG)"]
    if importlib.util.find_spec("perception") is not None:
        assert identity[header.index("perception local descriptors")] == "100.0%"
    from uploadscan import hashtypes

    if "sift" in hashtypes.registry:
        assert identity[header.index("own list (PDQ + sift)")] == "100.0%"
    else:
        assert "own list (PDQ + sift)" not in header
        assert 'hash type "sift" is not registered' in summary

    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib not installed" in summary
    else:
        for stem in ("detection_roc", "detection_threshold", "detection_distances"):
            png = results / f"{stem}_quick.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert 5_000 < png.stat().st_size < 200_000
            assert f"![{stem}_quick]({stem}_quick.png)" in report


def test_run_all_records_failures_and_timeouts(tmp_path: Path) -> None:
    """A failing or hanging script is reported and the others still run."""
    for name in ("run_all.py", "_common.py"):
        shutil.copy(BENCHMARKS / name, tmp_path / name)
    (tmp_path / "bench_good.py").write_text(
        "import sys\nassert '--quick' in sys.argv\nprint('| a | b |\\n|---|---|\\n| 1 | 2 |')\n"
        '# accepts "--quick"\n'
    )
    (tmp_path / "bench_broken.py").write_text("# \"--quick\"\nraise RuntimeError('boom')\n")
    # The hanging script starts a helper process (as bench_serve starts a service) and writes
    # its pid: a timeout must stop the helper too.
    (tmp_path / "bench_hangs.py").write_text(
        '# "--quick"\nimport pathlib, subprocess, sys, time\n'
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"pathlib.Path({str(tmp_path / 'child.pid')!r}).write_text(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    (tmp_path / "bench_noquick.py").write_text("print('full run only')\n")
    proc = _run([str(tmp_path / "run_all.py"), "--quick", "--timeout", "3"], tmp_path, None, 60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert "| bench_good | ok |" in report
    assert "| 1 | 2 |" in report
    assert "| bench_broken | failed (rc 1) |" in report
    assert "RuntimeError: boom" in report
    assert "| bench_hangs | timeout |" in report
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "a timed-out benchmark's child process was left running"
    assert "| bench_noquick | skipped |" in report
    assert "full run only" not in report


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent, init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
