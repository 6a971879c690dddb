"""Shared pieces of the media fuzzers: seed corpus, mutations, the invariant, a sandboxed runner.

The invariant under test: ``uploadscan.hash_file(data)`` on any bytes either returns a
``HashResult`` whose fields are well formed, or raises an ``UploadScanError`` subclass; never
another exception, never a hang, never a memory blow-up. Hangs and memory can only be judged
from outside the process doing the work, so inputs run in a worker subprocess (``Runner``)
that the parent kills when it overruns the per-input time limit; the worker resets the kernel's
peak-RSS counter before each input (``/proc/self/clear_refs``) and reports the peak after it.

Used by ``fuzz_media.py`` (long runs), ``tests/test_fuzz_smoke.py`` (CI) and
``tests/hostile/make_corpus.py`` (which reuses the generated seeds).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import resource
import select
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Limits the fuzz targets hash under: tight enough that every well-behaved input finishes
#: far inside the per-input timeout on a small machine, so a timeout means a real hang.
FUZZ_LIMITS_KW: dict[str, Any] = {
    "max_pixels": 16_000_000,
    "max_frames": 2_000,
    "max_duration_seconds": 600.0,
    "max_decode_seconds": 5.0,
}
#: Address-space cap for the worker: a runaway allocation fails instead of taking the machine.
WORKER_ADDRESS_SPACE = 3 << 30
#: An input whose peak resident memory exceeds this is reported as a memory finding.
PEAK_RSS_LIMIT_MB = 1024

# ----------------------------------------------------------------------------- seeds

#: Bundled fixtures (tests/fixtures, always present) used as seeds too: small ones only.
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_IMAGE_SEEDS = ("scene_e.jpg", "scene_f.png", "anim.gif")
FIXTURE_VIDEO_SEEDS = ("clip_b.webm",)

#: Small real files from the extended corpus (relative to its directory), when it is there.
REAL_IMAGE_SEEDS = (
    "pillow/Tests/images/hopper.jpg",
    "pillow/Tests/images/hopper.png",
    "pillow/Tests/images/hopper.gif",
    "pillow/Tests/images/hopper.webp",
    "pillow/Tests/images/hopper.tif",
    "scikit-image/microaneurysms.png",
)
REAL_VIDEO_SEEDS = ("imageio-binaries/images/realshort.mp4",)


def _pattern(width: int, height: int, seed: int = 0) -> Any:
    """A deterministic picture with real structure (PDQ quality well above 50)."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(1, width - 1)).astype(np.uint8)
    g = (y * 255 // max(1, height - 1)).astype(np.uint8)
    b = ((((x // 8) + (y // 8) + seed) % 2) * 255).astype(np.uint8)
    return np.dstack([r, g, b])


def generated_image_seeds() -> dict[str, bytes]:
    """Small images in every format and mode we accept, made with Pillow."""
    from PIL import Image

    base = Image.fromarray(_pattern(48, 40))
    out: dict[str, bytes] = {}

    def save(name: str, image: Image.Image, fmt: str, **kw: Any) -> None:
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    save("rgb.jpg", base, "JPEG", quality=80)
    save("progressive.jpg", base, "JPEG", progressive=True, quality=70)
    save("cmyk.jpg", base.convert("CMYK"), "JPEG")
    save("gray.jpg", base.convert("L"), "JPEG")
    save("rgb.png", base, "PNG")
    save("palette.png", base.convert("P"), "PNG")
    save("rgba.png", base.convert("RGBA"), "PNG")
    save("gray16.png", base.convert("I;16"), "PNG")
    save("bilevel.png", base.convert("1"), "PNG")
    save("rgb.bmp", base, "BMP")
    save("palette.bmp", base.convert("P"), "BMP")
    save("rgb.gif", base.convert("P"), "GIF")
    save("rgb.webp", base, "WEBP", quality=60)
    save("lossless.webp", base.convert("RGBA"), "WEBP", lossless=True)
    save("raw.tif", base, "TIFF")
    save("lzw.tif", base, "TIFF", compression="tiff_lzw")
    save("deflate.tif", base, "TIFF", compression="tiff_adobe_deflate")
    save("cmyk.tif", base.convert("CMYK"), "TIFF")
    frames = [Image.fromarray(_pattern(32, 24, seed=i)) for i in range(4)]
    save(
        "anim.gif",
        frames[0].convert("P"),
        "GIF",
        save_all=True,
        append_images=[f.convert("P") for f in frames[1:]],
        duration=400,
        loop=0,
    )
    save("anim.webp", frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=400)
    save("anim.png", frames[0], "PNG", save_all=True, append_images=frames[1:], duration=400)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    exif[0x010F] = "fuzz"
    save("exif.jpg", base, "JPEG", exif=exif.tobytes())
    return out


def generated_video_seeds() -> dict[str, bytes]:
    """Tiny videos (64x48, a dozen frames) in each container/codec pair we decode."""
    import av

    specs = (
        ("h264.mp4", "mp4", "libx264", "yuv420p"),
        ("mpeg4.mp4", "mp4", "mpeg4", "yuv420p"),
        ("h264.mov", "mov", "libx264", "yuv420p"),
        ("vp8.webm", "webm", "libvpx", "yuv420p"),
        ("vp9.webm", "webm", "libvpx-vp9", "yuv420p"),
        ("h264.mkv", "matroska", "libx264", "yuv420p"),
        ("mjpeg.avi", "avi", "mjpeg", "yuvj420p"),
    )
    out: dict[str, bytes] = {}
    for name, container_format, codec, pix_fmt in specs:
        buf = io.BytesIO()
        with av.open(buf, mode="w", format=container_format) as container:
            stream = container.add_stream(codec, rate=6)
            stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
            stream.options = {"g": "4"} if codec != "mjpeg" else {}
            if codec == "libx264":
                stream.options = {"g": "4", "preset": "ultrafast", "crf": "35"}
            for i in range(12):
                frame = av.VideoFrame.from_ndarray(_pattern(64, 48, seed=i), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        out[name] = buf.getvalue()
    return out


def seed_corpus(target: str, data_dir: Path | None) -> dict[str, bytes]:
    """Seeds for ``target`` ("image" or "video"): generated files, bundled fixtures, and small
    real files from the extended corpus at ``data_dir`` (``real-*``) when it is given."""
    if target == "image":
        seeds = generated_image_seeds()
        bundled, real = FIXTURE_IMAGE_SEEDS, REAL_IMAGE_SEEDS
    elif target == "video":
        seeds = generated_video_seeds()
        bundled, real = FIXTURE_VIDEO_SEEDS, REAL_VIDEO_SEEDS
    else:
        raise ValueError(f"unknown fuzz target {target!r}")
    for name in bundled:
        seeds["fixture-" + name] = (FIXTURES / name).read_bytes()
    if data_dir is not None:
        for rel in real:
            seeds["real-" + Path(rel).name] = (data_dir / rel).read_bytes()
    return seeds


# ----------------------------------------------------------------------------- mutations

_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


def _bit_flip(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)


def _byte_set(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))


def _truncate(rng: random.Random, data: bytearray) -> None:
    del data[rng.randrange(1, len(data) + 1) :]


def _remove_chunk(rng: random.Random, data: bytearray) -> None:
    start = rng.randrange(len(data))
    del data[start : start + rng.randint(1, max(1, len(data) // 8))]


def _duplicate_chunk(rng: random.Random, data: bytearray) -> None:
    start = rng.randrange(len(data))
    chunk = data[start : start + rng.randint(1, max(1, len(data) // 8))]
    at = rng.randrange(len(data) + 1)
    data[at:at] = chunk * rng.randint(1, 4)


def _header_field(rng: random.Random, data: bytearray) -> None:
    """Overwrite a 16/32-bit field near the start (where sizes, dimensions and counts live)."""
    window = min(len(data), rng.choice((64, 256, 2048)))
    width = rng.choice((2, 4))
    if window < width:
        return
    at = rng.randrange(window - width + 1)
    value = rng.choice(_INTERESTING) & ((1 << (8 * width)) - 1)
    order = rng.choice((">", "<"))
    data[at : at + width] = struct.pack(order + ("H" if width == 2 else "I"), value)


def _splice(rng: random.Random, data: bytearray, other: bytes) -> None:
    if not other:
        return
    at = rng.randrange(len(data))
    start = rng.randrange(len(other))
    data[at:] = other[start:]


MUTATORS: tuple[Callable[[random.Random, bytearray], None], ...] = (
    _bit_flip,
    _byte_set,
    _truncate,
    _remove_chunk,
    _duplicate_chunk,
    _header_field,
    _header_field,
)


def mutate(rng: random.Random, data: bytes, others: list[bytes], max_size: int = 1 << 20) -> bytes:
    """One to four stacked mutations of ``data`` (sometimes spliced with another seed)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            break
        if others and rng.random() < 0.05:
            _splice(rng, out, rng.choice(others))
        else:
            rng.choice(MUTATORS)(rng, out)
    return bytes(out[:max_size])


# ----------------------------------------------------------------------------- the invariant


class InvariantError(AssertionError):
    """``hash_file`` broke its contract on an input (the message says how)."""


def check_input(
    data: bytes, limits_kw: dict[str, Any] | None = None, scan: bool = True
) -> tuple[str, Any]:
    """Run the target on ``data``: (outcome, result or error).

    The outcome is "ok:<media type>" or "error:<UploadScanError subclass>". Raises
    ``InvariantError`` (with the traceback of the offending exception) when anything but an
    ``UploadScanError`` escapes or a returned result is malformed. ``scan`` also runs the
    scanner's hashing path (dihedral variants, border-trimmed queries) on valid inputs.
    """
    import uploadscan
    from uploadscan.hashing._hash_file import hash_upload, types_for

    limits = uploadscan.Limits(**(FUZZ_LIMITS_KW if limits_kw is None else limits_kw))
    try:
        result = uploadscan.hash_file(data, limits=limits)
    except uploadscan.UploadScanError as exc:
        if not str(exc):
            raise InvariantError(f"{type(exc).__name__} without a message") from exc
        return f"error:{type(exc).__name__}", exc
    except Exception as exc:  # the bug this harness exists to find
        raise InvariantError(
            f"unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        ) from exc
    _check_result(result, data)
    if scan:
        try:
            hashed = hash_upload(data, limits=limits, types=types_for([]), variants=True)
            if hashed.error is not None:
                raise hashed.error
        except uploadscan.UploadScanError:
            pass  # a decode-time budget can run out on the second pass; that is allowed
        except Exception as exc:
            raise InvariantError(
                f"hash_upload: unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            ) from exc
    return f"ok:{result.media_type}", result


def _is_hex(value: object, length: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) == length
        and all(c in "0123456789abcdef" for c in value)
    )


def _check_result(result: Any, data: bytes) -> None:
    problems = []
    if result.md5 != hashlib.md5(data).hexdigest():
        problems.append("md5 does not match the bytes")
    if result.sha256 != hashlib.sha256(data).hexdigest():
        problems.append("sha256 does not match the bytes")
    if result.size != len(data):
        problems.append(f"size {result.size} != {len(data)}")
    if result.pdq is not None and not _is_hex(result.pdq, 64):
        problems.append(f"pdq {result.pdq!r} is not 64 lowercase hex")
    if result.pdq is not None and not (
        isinstance(result.pdq_quality, int) and 0 <= result.pdq_quality <= 100
    ):
        problems.append(f"pdq_quality {result.pdq_quality!r} out of range")
    last = -1.0
    for frame in result.frames:
        if not _is_hex(frame.pdq, 64) or not 0 <= frame.quality <= 100:
            problems.append(f"malformed frame {frame!r}")
        if not frame.timestamp >= last - 1e-9:  # also catches NaN
            problems.append(f"frame timestamps go backwards at {frame.timestamp}")
        last = frame.timestamp
    if problems:
        raise InvariantError("; ".join(problems))


# ----------------------------------------------------------------------------- worker process


def _peak_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set size
    except OSError:
        pass


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MB, or 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def limit_address_space(limit: int = WORKER_ADDRESS_SPACE) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker_main(config: dict[str, Any]) -> None:
    """Read length-prefixed inputs on stdin; answer one JSON line each on stdout.

    ``config``: ``limits`` (``Limits`` keywords; default ``FUZZ_LIMITS_KW``), ``scan`` (also
    run the scanner's hashing path), ``address_space`` (bytes for RLIMIT_AS).
    """
    limit_address_space(int(config.get("address_space", WORKER_ADDRESS_SPACE)))
    limits_kw = config.get("limits")
    scan = bool(config.get("scan", True))
    check_input(b"\xff\xd8\xff", limits_kw, scan)  # import everything before measuring
    stdin, stdout = sys.stdin.buffer, sys.stdout
    stdout.write("ready\n")
    stdout.flush()
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        (size,) = struct.unpack("<I", head)
        data = stdin.read(size)
        _peak_reset()
        started = time.monotonic()
        reply: dict[str, Any] = {"bug": None}
        try:
            outcome, value = check_input(data, limits_kw, scan)
            if outcome.startswith("ok:"):
                reply["media_type"] = value.media_type
                reply["pdq"] = value.pdq
                reply["pdq_quality"] = value.pdq_quality
                reply["md5"] = value.md5
                reply["frames"] = len(value.frames)
            else:
                reply["error"] = str(value)
        except InvariantError as exc:
            outcome, reply["bug"] = "bug", str(exc)
        except MemoryError:
            outcome, reply["bug"] = "bug", "MemoryError escaped (address-space limit reached)"
        reply["outcome"] = outcome
        reply["seconds"] = time.monotonic() - started
        reply["peak_mb"] = peak_rss_mb()
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


@dataclass
class Finding:
    kind: str  # "bug", "hang", "crash", "memory"
    detail: str
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha1(self.data).hexdigest()[:16]


@dataclass
class Stats:
    executions: int = 0
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    max_seconds: float = 0.0
    max_peak_mb: float = 0.0


class Runner:
    """Feeds inputs to a worker subprocess; restarts it after a hang or a crash."""

    def __init__(
        self,
        timeout: float = 10.0,
        peak_limit_mb: float = PEAK_RSS_LIMIT_MB,
        *,
        werror: bool = False,
        stderr: Path | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.timeout = timeout
        self.peak_limit_mb = peak_limit_mb
        self.werror = werror  # warnings as errors, as under pytest's filterwarnings = error
        self.stderr = stderr  # where the worker's stderr goes (default: discarded)
        self.config = config or {}
        self.last_reply: dict[str, Any] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            command = [sys.executable]
            if self.werror:
                command += ["-W", "error"]
            command += [os.path.abspath(__file__), "--worker", json.dumps(self.config)]
            err = open(self.stderr, "ab") if self.stderr else subprocess.DEVNULL  # noqa: SIM115
            try:
                self._proc = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
                )
            finally:
                if self.stderr:
                    err.close()  # type: ignore[union-attr]
            assert self._proc.stdout is not None
            ready, _, _ = select.select([self._proc.stdout], [], [], 120.0)
            if not ready or self._proc.stdout.readline() != b"ready\n":
                raise RuntimeError("the fuzz worker did not start (see its stderr)")
        return self._proc

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, data: bytes, stats: Stats) -> None:
        """Run one input; the worker's reply (None after a hang or crash) is ``last_reply``."""
        self.last_reply = None
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        started = time.monotonic()
        try:
            proc.stdin.write(struct.pack("<I", len(data)) + data)
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
        line = proc.stdout.readline() if ready else b""
        elapsed = time.monotonic() - started
        stats.executions += 1
        stats.seconds += elapsed
        if not ready:
            self.close()
            stats.findings.append(Finding("hang", f"no answer within {self.timeout:.0f} s", data))
            stats.outcomes["hang"] = stats.outcomes.get("hang", 0) + 1
            return
        if not line:
            code = proc.wait()
            self.close()
            stats.findings.append(Finding("crash", f"worker died with status {code}", data))
            stats.outcomes["crash"] = stats.outcomes.get("crash", 0) + 1
            return
        reply = json.loads(line)
        self.last_reply = reply
        outcome = reply["outcome"]
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1
        stats.max_seconds = max(stats.max_seconds, reply["seconds"])
        stats.max_peak_mb = max(stats.max_peak_mb, reply["peak_mb"])
        if reply["bug"]:
            stats.findings.append(Finding("bug", reply["bug"], data))
        elif reply["peak_mb"] > self.peak_limit_mb:
            stats.findings.append(Finding("memory", f"peak RSS {reply['peak_mb']:.0f} MB", data))


def mutational_inputs(
    seeds: dict[str, bytes], rng: random.Random, unmutated: bool = True
) -> Iterator[bytes]:
    """The seeds themselves, then an endless stream of their mutants."""
    pool = list(seeds.values())
    if unmutated:
        yield from pool
    while True:
        yield mutate(rng, rng.choice(pool), pool)


def save_finding(finding: Finding, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{finding.kind}-{finding.digest}.bin"
    path.write_bytes(finding.data)
    path.with_suffix(".txt").write_text(finding.detail + "\n")
    return path


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    else:
        sys.exit("fuzzlib.py is a library; run fuzz_media.py")
