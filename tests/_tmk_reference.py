"""The reference TMK hasher, built from ``../shared/data``'s ThreatExchange sources and run.

SOURCES_AND_COMMANDS.txt says how: copy ``threatexchange/tmk`` and ``threatexchange/pdq`` to
a work directory and ``make -C tmk/cpp tmk-hash-video tmk-two-level-score``; the hasher needs
an ffmpeg binary at run time. It is built once in a temporary directory outside the project
(never committed, never imported) and only ever *run*: its outputs are golden values for
videos that have no sample hash. Tests and ``benchmarks/bench_video.py`` share the build.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

WORK = Path(tempfile.gettempdir()) / "uploadscan-tmk-reference"


def missing_tools() -> str | None:
    """Why the reference cannot be built or run here (``None`` when it can)."""
    absent = [tool for tool in ("g++", "make", "ffmpeg") if shutil.which(tool) is None]
    return f"no {', '.join(absent)} on PATH" if absent else None


def build(data: Path) -> Path:
    """Path of ``tmk-hash-video``, building it first if needed (about 15 s)."""
    WORK.mkdir(parents=True, exist_ok=True)
    binary = WORK / "tmk" / "cpp" / "tmk-hash-video"
    with (WORK / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a test run and a benchmark may build at once
        if not binary.exists():
            for part in ("tmk", "pdq"):
                target = WORK / part
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(data / "threatexchange" / part, target)
                subprocess.run(["chmod", "-R", "u+w", str(target)], check=True)
            subprocess.run(
                ["make", "-C", str(WORK / "tmk" / "cpp"), "tmk-hash-video", "tmk-two-level-score"],
                check=True,
                capture_output=True,
            )
    return binary


def hash_video(binary: Path, video: Path) -> bytes:
    """The reference's ``.tmk`` of ``video`` (cached by the video's content)."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    digest = hashlib.sha256(video.read_bytes()).hexdigest()[:24]
    out = WORK / "hashes" / f"{video.stem}-{digest}.tmk"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".part")
        subprocess.run(
            [str(binary), "-f", ffmpeg, "-i", str(video), "-o", str(partial)],
            check=True,
            capture_output=True,
        )
        partial.rename(out)
    return out.read_bytes()


def ffmpeg_version() -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return ""
    head = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout
    return head.split("\n", 1)[0]
