"""Video hashing speed and match verdicts: uploadscan vs vPDQ at one frame a second, and
TMK+PDQF vs the reference ``tmk-hash-video``.

Builds a 60 s 1280x720 H.264 clip (12 shared Kodak photos, 5 s each with a slow zoom/pan,
libx264 defaults through PyAV) in a temporary directory on first run, then times, in the
same run, interleaved, wall and CPU seconds (CPU includes every thread, and for the
reference its ffmpeg child):

PDQ frames (what a scan costs when no list holds TMK):

- ``uploadscan``: ``_pdq.hash_video`` (keyframes + time sampling, NONREF decode, GOP chunks
  with FFmpeg frame threads, luma PDQ);
- ``uploadscan, 1 FFmpeg thread per chunk``: the chunks as they were, Python threads only;
- ``uploadscan, 2 s sampling``: a cheaper plan (half the sampled frames; not adopted: the
  match rule credits time coverage);
- ``vpdq 1fps``: the ``vpdq`` package's ``computeHash(seconds_per_hash=1)`` (if installed);
- ``pyav+pdqhash 1fps``: PyAV decoding every frame, ``pdqhash`` on one frame a second;
- ``pyav decode all`` and ``pyav keyframes only``: decoding alone, as bounds.

TMK+PDQF and PDQ frames in one decode pass (what a scan costs when a list holds TMK), against
``tmk-hash-video`` built from ``../shared/data``'s ThreatExchange sources in a temporary
directory outside the project (when g++, make and ffmpeg exist; the script says so when they
do not), each row with its scores against the reference's hash of the clip:

- ``uploadscan TMK + PDQ, fast``: the scanner's default (non-reference frames not decoded,
  area resize), with the extra query forms (bars trimmed, mirrors);
- ``uploadscan TMK + PDQ, exact``: every frame decoded, bicubic, like the reference.

Then the match verdicts of uploadscan's and vPDQ's hashes of the vPDQ sample videos and the
synthetic transformed copies against the reference lists, under the time-coverage rule.

    python benchmarks/bench_video.py            # full run
    python benchmarks/bench_video.py --quick    # smoke run (10 s clip, 1 repeat), < 60 s
"""

from __future__ import annotations

import argparse
import fractions
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pdqhash
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _tmk_reference  # noqa: E402
from _common import find_data_dir, percentile, print_machine_info  # noqa: E402

from uploadscan._video_rule import compare_videos  # noqa: E402
from uploadscan.hashing._hash_file import hash_upload  # noqa: E402
from uploadscan.hashing._pdq import hash_video  # noqa: E402
from uploadscan.hashing._registry import get as hash_type  # noqa: E402
from uploadscan.hashing._result import FrameHash  # noqa: E402
from uploadscan.hashing._tmk import TmkHashType, TmkMode  # noqa: E402
from uploadscan.hashing._tmk_format import TmkHash, parse_tmk  # noqa: E402
from uploadscan.hashing._tmk_score import two_level_score  # noqa: E402
from uploadscan.hashing._vpdq import read_vpdq  # noqa: E402
from uploadscan.media import _video  # noqa: E402
from uploadscan.media._limits import DEFAULT_LIMITS  # noqa: E402

try:
    import vpdq
except ImportError:  # reported as missing
    vpdq = None


def make_clip(data: Path, path: Path, seconds: int, fps: int = 30) -> None:
    width, height = 1280, 720
    photos = [
        Image.open(p).convert("RGB") for p in sorted((data / "kodak").glob("kodim*.png"))[:12]
    ]
    per_photo = seconds * fps // len(photos) or 1
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        stream.codec_context.time_base = fractions.Fraction(1, fps)
        for i in range(seconds * fps):
            image = photos[min(i // per_photo, len(photos) - 1)]
            t = (i % per_photo) / per_photo
            iw, ih = image.size
            base_w = min(iw, ih * width / height)
            base_h = base_w * height / width
            zoom = 1.0 + 0.3 * t
            cw, ch = base_w / zoom, base_h / zoom
            x0, y0 = (iw - cw) * t, (ih - ch) / 2
            frame_image = image.transform(
                (width, height),
                Image.Transform.EXTENT,
                (x0, y0, x0 + cw, y0 + ch),
                resample=Image.Resampling.BILINEAR,
            )
            frame = av.VideoFrame.from_image(frame_image)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.rename(path)


def pyav_decode(path: Path, keyframes_only: bool = False) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        return sum(1 for _ in container.decode(stream))


def pyav_pdqhash_1fps(path: Path) -> list[FrameHash]:
    """Reference pipeline: decode every frame, pdqhash on the first frame of every second."""
    out = []
    next_time = 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            t = float(frame.time or 0.0)
            if t + 1e-6 >= next_time:
                bits, quality = pdqhash.compute(frame.to_ndarray(format="rgb24"))
                out.append(
                    FrameHash(t, np.packbits(bits.astype(np.uint8)).tobytes().hex(), quality)
                )
                next_time += 1.0
    return out


def vpdq_1fps(path: Path) -> list[FrameHash]:
    assert vpdq is not None
    features = vpdq.computeHash(str(path), seconds_per_hash=1.0)
    return [FrameHash(float(f.timestamp), f.hex, int(f.quality)) for f in features]


def ours(path: Path) -> list[FrameHash]:
    media_type = "video/webm" if path.suffix == ".webm" else "video/mp4"
    return list(hash_video(path.read_bytes(), media_type, DEFAULT_LIMITS).frames)


def timed(fn: Callable[[], object], repeats: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of ``repeats`` calls; CPU counts every thread of this process
    and every child waited for (the reference's ffmpeg)."""
    times = []
    for _ in range(repeats):
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = time.process_time()
        started = time.perf_counter()
        fn()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        child = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
        times.append((wall, time.process_time() - cpu + child))
    return times


def machine() -> None:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print_machine_info(
        [
            ("cpu model", model),
            ("load", load()),
            ("PyAV", f"{av.__version__} (FFmpeg {av.ffmpeg_version_info})"),
            ("vpdq", "installed" if vpdq is not None else "MISSING"),
        ]
    )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f}"


def interleaved(
    runs: dict[str, Callable[[], object]], repeats: int
) -> dict[str, list[tuple[float, float]]]:
    """Warm up, then time each run ``repeats`` times, rotating the order each round so
    machine noise hits every pipeline alike."""
    for fn in runs.values():  # warm-up (imports, page cache, PDQ matrices)
        fn()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    names = list(runs)
    for round_number in range(repeats):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].extend(timed(runs[name], 1))
    return samples


def medians(values: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in values), statistics.median(c for _, c in values)


def p99(values: list[tuple[float, float]]) -> float:
    """Nearest-rank p99 of the wall times (the slowest of a handful of repeats)."""
    return percentile([w for w, _ in values], 99)


def with_chunk_threads(thread_type: str | None, fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        saved = _video.CHUNK_THREAD_TYPE
        _video.CHUNK_THREAD_TYPE = thread_type
        try:
            return fn()
        finally:
            _video.CHUNK_THREAD_TYPE = saved

    return run


def speed(clip: Path, repeats: int) -> None:
    media_type = "video/mp4"
    data = clip.read_bytes()
    runs: dict[str, Callable[[], object]] = {"uploadscan": lambda: ours(clip)}
    runs["uploadscan, 1 FFmpeg thread per chunk"] = with_chunk_threads(None, lambda: ours(clip))
    runs["uploadscan, 2 s sampling"] = lambda: hash_video(
        data, media_type, DEFAULT_LIMITS, interval=2.0
    )
    if vpdq is not None:
        runs["vpdq 1fps (thread_count=0)"] = lambda: vpdq_1fps(clip)
    runs["pyav+pdqhash 1fps"] = lambda: pyav_pdqhash_1fps(clip)
    runs["pyav decode all"] = lambda: pyav_decode(clip)
    runs["pyav keyframes only"] = lambda: pyav_decode(clip, keyframes_only=True)
    print(f"\n## PDQ frames\n\n{load()} before")
    samples = interleaved(runs, repeats)
    print(f"{load()} after")
    wall0, cpu0 = medians(samples["uploadscan"])
    print(f"\nclip: {clip.name} ({clip.stat().st_size / 1e6:.1f} MB), {repeats} repeats")
    print(
        "| pipeline | median wall s | p99 wall s | median CPU s | wall x uploadscan "
        "| CPU x uploadscan |"
    )
    print("|---|---|---|---|---|---|")
    for name, values in samples.items():
        wall, cpu = medians(values)
        print(f"| {name} | {wall:.3f} | {p99(values):.3f} | {cpu:.3f} | {wall / wall0:.2f} "
              f"| {cpu / cpu0:.2f} |")  # fmt: skip
    frames = ours(clip)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        keys = [round(float(f.time or 0), 2) for f in container.decode(stream)]
    print(f"uploadscan kept {len(frames)} frames; keyframes at {keys}")
    two_s = hash_video(data, media_type, DEFAULT_LIMITS, interval=2.0).frames
    print(f"with 2 s sampling it keeps {len(two_s)} frames")


def tmk_speed(data: Path, clip: Path, repeats: int, *, build: bool) -> None:
    """TMK + PDQ frames in one pass against the reference, on the same clip, same run."""
    print("\n## TMK+PDQF and PDQ frames in one pass, against tmk-hash-video\n")
    missing = _tmk_reference.missing_tools()
    binary = _tmk_reference.WORK / "tmk" / "cpp" / "tmk-hash-video"
    if missing is not None:
        print(f"reference not built: {missing} (it needs g++, make and ffmpeg)")
        return
    if not binary.exists() and not build:
        print("reference not built: --quick does not build it (a full run does, ~15 s)")
        return
    binary = _tmk_reference.build(data)
    ffmpeg = shutil.which("ffmpeg")
    print(f"reference: {binary} (built from {data}/threatexchange, run with {ffmpeg}: "
          f"{_tmk_reference.ffmpeg_version()})")  # fmt: skip
    out = Path(tempfile.gettempdir()) / "uploadscan-bench-video" / "reference.tmk"
    pdq = hash_type("pdq")
    results: dict[str, TmkHash] = {}

    def reference() -> None:
        assert ffmpeg is not None
        command = [str(binary), "-f", ffmpeg, "-i", str(clip), "-o", str(out)]
        subprocess.run(command, check=True, capture_output=True)

    def ours_tmk(name: str, mode: TmkMode) -> Callable[[], object]:
        def run() -> None:
            hashed = hash_upload(clip, types=[pdq, TmkHashType(mode)], variants=True)
            assert hashed.result.tmk is not None and hashed.result.frames
            results[name] = parse_tmk(hashed.result.tmk)

        return run

    runs: dict[str, Callable[[], object]] = {
        "reference tmk-hash-video": reference,
        "uploadscan TMK + PDQ, fast": ours_tmk("uploadscan TMK + PDQ, fast", TmkMode.FAST),
        "uploadscan TMK + PDQ, exact": ours_tmk("uploadscan TMK + PDQ, exact", TmkMode.EXACT),
        "uploadscan PDQ frames only": lambda: ours(clip),
    }
    print(f"{load()} before; threads: FFmpeg auto in every decoder, numpy products "
          f"single-threaded (einsum), {os.cpu_count()} cpus")  # fmt: skip
    samples = interleaved(runs, repeats)
    print(f"{load()} after")
    expected = parse_tmk(out.read_bytes())
    ref_wall, ref_cpu = medians(samples["reference tmk-hash-video"])
    print(f"\nclip: {clip.name}, {repeats} repeats; speedup = reference / row")
    print(
        "| pipeline | median wall s | p99 wall s | median CPU s | wall speedup | CPU speedup "
        "| L1 / L2 |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, values in samples.items():
        wall, cpu = medians(values)
        score = ""
        if name in results:
            pair = two_level_score(expected, results[name])
            score = f"{pair.level1:.6f} / {pair.level2:.6f}"
        print(f"| {name} | {wall:.2f} | {p99(values):.2f} | {cpu:.2f} | {ref_wall / wall:.2f}x "
              f"| {ref_cpu / cpu:.2f}x | {score} |")  # fmt: skip


def verdicts(data: Path) -> None:
    hashes = data / "threatexchange/vpdq/sample-hashes"
    lists = {
        "chair-orig-22-sd-bar": read_vpdq(hashes / "chair-orig-22-sd-bar.txt"),
        "pattern-hd-no-bar": read_vpdq(hashes / "pattern-hd-no-bar.txt"),
        "multishot_4photos": read_vpdq(
            data / "expected_computed/vpdq/synthetic-videos__multishot_4photos.mp4.txt"
        ),
    }
    videos = sorted((data / "threatexchange/tmk/sample-videos").glob("*.mp4"))
    videos += sorted((data / "synthetic-videos").glob("multishot*"))
    videos = [v for v in videos if v.suffix in (".mp4", ".webm")]
    print("\nverdicts under the time-coverage rule (coverage of the list's time; M = match >= 0.8)")
    header = "  ".join(f"{name[:20]:>20s}" for name in lists)
    print(f"{'video':36s} {'hasher':10s} {header}   same")
    disagreements = 0
    for video in videos:
        rows = {"uploadscan": ours(video)}
        if vpdq is not None:
            rows["vpdq 1fps"] = vpdq_1fps(video)
        else:
            rows["pyav+pdq"] = pyav_pdqhash_1fps(video)
        results = {
            hasher: [compare_videos(listed, frames) for listed in lists.values()]
            for hasher, frames in rows.items()
        }
        verdict_sets = {tuple(r.is_match for r in res) for res in results.values()}
        same = len(verdict_sets) == 1
        disagreements += not same
        for hasher, res in results.items():
            cells = "  ".join(
                f"{r.listed_coverage:18.2f}{'M' if r.is_match else ' '} " for r in res
            )
            print(f"{video.name[:36]:36s} {hasher:10s} {cells}   {'yes' if same else 'NO'}")
    print(f"videos with different verdicts: {disagreements} of {len(videos)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s clip, 1 repeat, no verdicts")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data = find_data_dir()
    seconds = 10 if args.quick else 60
    work = Path(tempfile.gettempdir()) / "uploadscan-bench-video"
    work.mkdir(exist_ok=True)
    clip = work / f"clip{seconds}s_720p_h264.mp4"
    machine()
    print(
        "threads: uploadscan decodes GOP chunks on min(4, cpus) threads, FFmpeg frame threads "
        "in each (auto); its every-frame pass is one decoder with FFmpeg auto threads; vpdq "
        "thread_count=0 (auto); PyAV runs use FFmpeg's default threading"
    )
    if not clip.exists():
        started = time.perf_counter()
        make_clip(data, clip, seconds)
        print(f"made {clip} in {time.perf_counter() - started:.1f} s")
    repeats = 1 if args.quick else args.repeats
    speed(clip, repeats)
    tmk_speed(data, clip, repeats, build=not args.quick)
    if not args.quick:
        verdicts(data)


if __name__ == "__main__":
    main()
