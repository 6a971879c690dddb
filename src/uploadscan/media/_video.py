"""Video and animated-image hashing: which frames to decode, and PDQ of each (vPDQ-compatible).

vPDQ hashes every frame (or one a second) and so decodes every frame. Decoding is the cost: a
keyframe can be decoded on its own, any other frame needs every reference frame since the last
keyframe. So we plan before decoding:

1. Demux once without decoding (cheap) to learn where the keyframes are and how long the video
   really is (declared durations are not trusted).
2. Every keyframe is hashed. Where keyframes are further apart than ``interval`` seconds, the
   gap gets evenly spaced sample times so no stretch of the video goes unhashed for longer than
   ``interval``: the match rule (``_vpdq``) credits a listed video by the time its matched
   frames cover, so coverage matters more than frame count.
3. Each group of pictures (GOP) is decoded only as far as its last sample time, with
   non-reference frames skipped by the decoder (``skip_frame=NONREF``); a GOP without samples
   costs one packet. Samples take the first decoded frame at or after their time.
4. GOPs are independent, so long videos are split into contiguous chunks decoded in parallel,
   each by its own demuxer (one seek per chunk).

The decoder does not hash: every sampled frame goes, as a ``Frame``, to the ``FrameSink`` of
each hash type a list needs (PDQ frames today), so one decode pass feeds them all.

Animated GIF, WebP and PNG go through Pillow, which composites frames the way browsers show them;
the frame shown at each ``interval`` tick is hashed.

Limits: pixels are checked from the codec parameters before any decode, and on every frame;
the declared and the demuxed duration against ``max_duration_seconds``; hashed frames against
``max_frames``; and wall-clock time against ``max_decode_seconds`` throughout. Every failure
leaves as a typed ``MediaError``.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from threading import Lock
from typing import Any

import av
import av.error

from .._errors import CorruptMediaError, MediaError, MediaTooLargeError, UnsupportedMediaError
from ._animation import decode_animation
from ._frames import AvFrame, FrameSink, VideoInfo
from ._image import check_deadline
from ._limits import Limits

#: Demuxer allowed for each sniffed container type. Naming it stops FFmpeg from probing the
#: upload as some other format (playlist formats can reference other files and URLs).
_DEMUXERS = {
    "video/mp4": "mov",
    "video/quicktime": "mov",
    "video/x-m4v": "mov",
    "video/3gpp": "mov",
    "video/3gpp2": "mov",
    "video/webm": "matroska",
    "video/x-matroska": "matroska",
    "video/x-msvideo": "avi",
}
_ANIMATED = ("image/gif", "image/webp", "image/png")

_TIME_TOLERANCE = 0.002  # seconds; timestamps are rounded to milliseconds in vPDQ files
#: Below this many packets to decode, one thread is faster than starting a second demuxer.
_PARALLEL_MIN_PACKETS = 90
_MAX_WORKERS = 4
_MAX_PACKET_ERRORS = 16


def decode_video(
    data: bytes,
    media_type: str,
    limits: Limits,
    sinks: Sequence[FrameSink],
    *,
    interval: float = 1.0,
    started: float | None = None,
) -> VideoInfo:
    """Decode a video or animated image once, handing every keyframe and frames about
    ``interval`` seconds apart (or better) to each of ``sinks``."""
    if not interval > 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    started = time.monotonic() if started is None else started
    if media_type in _ANIMATED:
        return decode_animation(data, media_type, limits, sinks, interval, started)
    demuxer = _DEMUXERS.get(media_type)
    if demuxer is None:
        raise UnsupportedMediaError(
            f"{media_type} is not a video format we decode", media_type=media_type
        )
    job = _Job(data, media_type, demuxer, limits, started)
    with _av_errors(media_type):
        return _decode_av(job, sinks, interval)


# ----------------------------------------------------------------------------- PyAV videos


@dataclass(frozen=True)
class _Job:
    data: bytes
    media_type: str
    demuxer: str
    limits: Limits
    started: float

    def check_time(self) -> None:
        check_deadline(self.started, self.limits, self.media_type, "video decoding")

    def too_large(self, message: str, limit: str) -> MediaTooLargeError:
        return MediaTooLargeError(
            f"{self.media_type}: {message}", media_type=self.media_type, limit=limit
        )

    def open(self) -> Any:
        container = av.open(io.BytesIO(self.data), mode="r", format=self.demuxer)
        if not container.streams.video:
            container.close()
            raise UnsupportedMediaError(
                f"{self.media_type} has no video stream", media_type=self.media_type
            )
        if container.streams.video[0].codec_context is None:
            # A damaged codec id leaves the stream without a decoder context.
            container.close()
            raise UnsupportedMediaError(
                f"{self.media_type}: the video stream's codec is unknown",
                media_type=self.media_type,
            )
        return container


@dataclass
class _Gop:
    """One keyframe and what to sample before the next: decode up to ``targets[-1]``."""

    key_ts: int  # the keyframe packet's timestamp, in stream time base
    start: float  # seconds from the start of the video
    targets: list[float]
    packets: int  # packets in the GOP (to balance chunks)
    end: float = 0.0

    @property
    def cost(self) -> int:
        if not self.targets:
            return 1
        span = self.end - self.start
        share = (self.targets[-1] - self.start) / span if span > 0 else 1.0
        return max(1, math.ceil(self.packets * share))


@dataclass
class _Plan:
    gops: list[_Gop]
    origin: int  # first timestamp (stream time base): time zero
    time_base: float
    duration: float
    width: int
    height: int


@dataclass
class _Chunk:
    """Result of decoding a run of GOPs: its own sinks (forked), frames decoded and handed."""

    sinks: list[FrameSink]
    decoded: int = 0
    delivered: int = 0

    @classmethod
    def forked(cls, sinks: Sequence[FrameSink]) -> _Chunk:
        return cls([sink.fork() for sink in sinks])

    def deliver(self, job: _Job, timestamp: float, frame: Any, *, sampled: bool = True) -> None:
        """Hand ``frame`` to the sinks: a sampled frame (keyframe, or the first at a sample
        time) to all of them, any other frame only to the sinks that take every frame.

        ``max_frames`` bounds the sampled frames, whose hashes are kept; every-frame sinks
        keep running sums, bounded by the duration and decode-time limits."""
        _check_frame(job, frame.width, frame.height, self.delivered if sampled else 0)
        if sampled:
            self.delivered += 1
        wrapped = AvFrame(frame)
        for sink in self.sinks:
            if sampled or sink.every_frame:
                sink.add(timestamp, wrapped)

    def merge_into(self, sinks: Sequence[FrameSink]) -> None:
        for target, mine in zip(sinks, self.sinks, strict=True):
            if target is not mine:
                target.merge(mine)


def _packet_ts(packet: Any) -> int | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    return int(ts) if ts is not None else None


def _decode_av(job: _Job, sinks: Sequence[FrameSink], interval: float) -> VideoInfo:
    container = job.open()
    try:
        plan = _make_plan(job, container, interval)
    finally:
        container.close()
    if plan is None:  # no usable keyframe timestamps: decode everything, sample by time
        chunk = _decode_all(job, sinks, interval, None)
        duration = None
        width = height = None
    elif any(sink.every_frame for sink in sinks):
        # Some hash needs every frame (a vPDQ list of every frame, TMK): one sequential pass
        # that also hands the sampled frames to the other sinks.
        chunk = _decode_all(job, sinks, interval, plan)
        duration, width, height = plan.duration, plan.width, plan.height
    else:
        chunk = _decode_planned(job, plan, sinks)
        duration, width, height = plan.duration, plan.width, plan.height
    if chunk.decoded == 0:
        # Every packet failed to decode (or there were none): an empty frame list would pass
        # for "hashed, nothing to match" and let a damaged upload through on digests alone.
        raise CorruptMediaError(
            f"{job.media_type}: no frame could be decoded", media_type=job.media_type
        )
    chunk.merge_into(sinks)
    return VideoInfo(duration, width, height, chunk.decoded)


def _check_stream(job: _Job, container: Any) -> tuple[Any, int, int]:
    stream = container.streams.video[0]
    context = stream.codec_context
    width, height = int(context.width or 0), int(context.height or 0)
    if width * height > job.limits.max_pixels:
        raise job.too_large(
            f"{width}x{height} frames are over max_pixels={job.limits.max_pixels}", "max_pixels"
        )
    declared = []
    if container.duration is not None and container.duration > 0:
        declared.append(container.duration / 1_000_000)
    if stream.duration is not None and stream.time_base is not None:
        declared.append(float(stream.duration * stream.time_base))
    for seconds in declared:
        _check_duration(job, seconds, "declares")
    return stream, width, height


def _check_duration(job: _Job, seconds: float, how: str) -> None:
    if seconds > job.limits.max_duration_seconds:
        raise job.too_large(
            f"{how} {seconds:.0f} s, over max_duration_seconds={job.limits.max_duration_seconds}",
            "max_duration_seconds",
        )


def _make_plan(job: _Job, container: Any, interval: float) -> _Plan | None:
    """Demux without decoding; None when keyframes cannot be located by timestamp."""
    stream, width, height = _check_stream(job, container)
    if stream.time_base is None:
        return None
    time_base = float(stream.time_base)
    keys: list[int] = []
    counts: list[int] = []
    first: int | None = None
    last_end = 0
    max_packets = job.limits.max_frames * 1000  # bounds the index of a "frame bomb"
    seen = 0
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        seen += 1
        if seen % 256 == 0:
            job.check_time()
            if seen > max_packets:
                raise job.too_large(f"more than {max_packets} packets", "max_frames")
        ts = _packet_ts(packet)
        if packet.is_keyframe:
            if ts is None:
                return None
            keys.append(ts)
            counts.append(0)
        if ts is not None:
            first = ts if first is None else min(first, ts)
            last_end = max(last_end, ts + int(packet.duration or 0))
        if counts:
            counts[-1] += 1
    if not keys or first is None:
        return None
    duration = (last_end - first) * time_base
    _check_duration(job, duration, "runs for")
    starts = [(k - first) * time_base for k in keys]
    gops = []
    for index, (key, start, packets) in enumerate(zip(keys, starts, counts, strict=True)):
        end = starts[index + 1] if index + 1 < len(starts) else max(duration, start)
        gops.append(_Gop(key, start, _sample_times(start, end, interval), packets, end))
    return _Plan(gops, first, time_base, duration, width, height)


def _sample_times(start: float, end: float, interval: float) -> list[float]:
    """Evenly spaced times strictly inside (start, end) so no gap exceeds ``interval``."""
    length = end - start
    count = math.ceil(length / interval - 1e-6) - 1
    if count <= 0:
        return []
    step = length / (count + 1)
    return [start + step * i for i in range(1, count + 1)]


def _split(gops: list[_Gop], parts: int) -> list[tuple[int, int]]:
    """Contiguous GOP ranges of about equal decode cost."""
    costs = [g.cost for g in gops]
    total = sum(costs)
    bounds = [0]
    running = 0
    for index, cost in enumerate(costs):
        running += cost
        if len(bounds) < parts and running >= total * len(bounds) / parts and index + 1 < len(gops):
            bounds.append(index + 1)
    bounds.append(len(gops))
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


_executor: ThreadPoolExecutor | None = None
_executor_lock = Lock()


def _workers() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            count = max(1, min(_MAX_WORKERS, os.cpu_count() or 1))
            _executor = ThreadPoolExecutor(count, thread_name_prefix="uploadscan-video")
        return _executor


def _decode_planned(job: _Job, plan: _Plan, sinks: Sequence[FrameSink]) -> _Chunk:
    total = sum(g.cost for g in plan.gops)
    parts = max(1, min(_MAX_WORKERS, os.cpu_count() or 1))
    if total < _PARALLEL_MIN_PACKETS or parts == 1 or len(plan.gops) == 1:
        return _decode_range(job, plan, sinks, 0, len(plan.gops))
    ranges = _split(plan.gops, parts)
    futures: list[Future[_Chunk]] = [
        _workers().submit(_decode_range, job, plan, sinks, a, b) for a, b in ranges[1:]
    ]
    try:
        result = _decode_range(job, plan, sinks, *ranges[0])
        for future in futures:
            chunk = future.result()
            for mine, later in zip(result.sinks, chunk.sinks, strict=True):
                mine.merge(later)
            result.decoded += chunk.decoded
            result.delivered += chunk.delivered
    finally:
        for future in futures:
            future.cancel()
    return result


def _decode_range(
    job: _Job, plan: _Plan, sinks: Sequence[FrameSink], first: int, stop: int
) -> _Chunk:
    """Decode GOPs ``first`` .. ``stop - 1`` with a demuxer of its own.

    The chunk seeks to its first keyframe; if the demuxer cannot seek there (some AVI and
    Matroska files without an index land past it), the chunk demuxes from the start instead.
    """
    chunk = _seek_and_decode(job, plan, sinks, first, stop, seek=first > 0)
    if chunk is None:
        chunk = _seek_and_decode(job, plan, sinks, first, stop, seek=False)
    if chunk is None:  # cannot happen: a chunk decoded from the start never overshoots
        raise CorruptMediaError(f"{job.media_type}: cannot seek", media_type=job.media_type)
    return chunk


def _seek_and_decode(
    job: _Job, plan: _Plan, sinks: Sequence[FrameSink], first: int, stop: int, *, seek: bool
) -> _Chunk | None:
    chunk = _Chunk.forked(sinks)
    key_index = {g.key_ts: i for i, g in reversed(list(enumerate(plan.gops)))}
    container = job.open()
    try:
        stream = container.streams.video[0]
        context = stream.codec_context
        context.thread_count = 1  # parallelism comes from chunks
        context.skip_frame = "NONREF"
        if seek:
            container.seek(plan.gops[first].key_ts, stream=stream, backward=True, any_frame=False)
        decoder = _GopDecoder(job, plan, chunk, context)
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.is_keyframe:
                decoder.finish()
                ts = _packet_ts(packet)
                index = key_index.get(ts) if ts is not None else None
                if index is not None and index >= stop:
                    break
                if index is not None and index >= first:
                    if seek and decoder.begun == 0 and index > first:
                        return None  # the seek overshot
                    decoder.begin(plan.gops[index])
            decoder.feed(packet)
        decoder.finish()
    finally:
        container.close()
    return chunk


class _GopDecoder:
    """Feeds one GOP's packets until its samples are taken, then drops the rest."""

    def __init__(self, job: _Job, plan: _Plan, chunk: _Chunk, context: Any) -> None:
        self.job, self.plan, self.chunk, self.context = job, plan, chunk, context
        self.gop: _Gop | None = None
        self.need_key = False
        self.targets: deque[float] = deque()
        self.begun = 0
        self.errors = 0

    def begin(self, gop: _Gop) -> None:
        self.gop, self.need_key, self.targets = gop, True, deque(gop.targets)
        self.begun += 1

    def feed(self, packet: Any) -> None:
        if self.gop is None:
            return
        self.job.check_time()
        try:
            frames = self.context.decode(packet)
        except av.error.InvalidDataError:
            # One damaged packet: FFmpeg conceals it in the frames that follow. Many of them
            # mean the stream is garbage.
            self.errors += 1
            if self.errors > _MAX_PACKET_ERRORS:
                raise
            return
        self._take(frames)
        if not self.need_key and not self.targets:
            self.context.flush_buffers()
            self.gop = None

    def finish(self) -> None:
        if self.gop is not None:
            self._take(self.context.decode(None))  # drain frames held back for reordering
            self.context.flush_buffers()
            self.gop = None

    def _take(self, frames: list[Any]) -> None:
        gop = self.gop
        assert gop is not None
        for frame in frames:
            self.chunk.decoded += 1
            if frame.pts is None:
                continue
            t = (int(frame.pts) - self.plan.origin) * self.plan.time_base
            if self.need_key:
                if t < gop.start - _TIME_TOLERANCE:
                    continue  # leading frames of an open GOP
                self.need_key = False
            elif self.targets and t >= self.targets[0] - _TIME_TOLERANCE:
                pass
            else:
                continue
            while self.targets and self.targets[0] <= t + _TIME_TOLERANCE:
                self.targets.popleft()
            self._hash(frame, t)

    def _hash(self, frame: Any, t: float) -> None:
        self.chunk.deliver(self.job, round(t, 6), frame)


def _check_frame(job: _Job, width: int, height: int, delivered: int) -> None:
    if width * height > job.limits.max_pixels:
        raise job.too_large(
            f"a {width}x{height} frame is over max_pixels={job.limits.max_pixels}", "max_pixels"
        )
    if delivered >= job.limits.max_frames:
        raise job.too_large(f"more than max_frames={job.limits.max_frames} frames", "max_frames")


def _decode_all(
    job: _Job, sinks: Sequence[FrameSink], interval: float, plan: _Plan | None
) -> _Chunk:
    """Decode every frame in order (the codec's own threads help here); sampled sinks get
    keyframes and one frame per tick, every-frame sinks all of them.

    With a ``plan``, times count from the stream's first timestamp as the planned path's do,
    so a video's sampled frames carry the same times whichever path hashed them.
    """
    chunk = _Chunk(list(sinks))
    container = job.open()
    try:
        stream, _, _ = _check_stream(job, container)
        stream.codec_context.thread_type = "AUTO"
        next_tick = 0.0
        rate = float(stream.average_rate or 25)
        for frame in container.decode(stream):
            chunk.decoded += 1
            if chunk.decoded % 16 == 0:
                job.check_time()
            if plan is not None and frame.pts is not None:
                t = (int(frame.pts) - plan.origin) * plan.time_base
            elif frame.time is not None:
                t = float(frame.time)
            else:
                t = (chunk.decoded - 1) / rate
            sampled = bool(frame.key_frame) or t >= next_tick - _TIME_TOLERANCE
            chunk.deliver(job, round(t, 6), frame, sampled=sampled)
            if sampled:
                next_tick = t + interval
            _check_duration(job, t, "runs for")
    finally:
        container.close()
    return chunk


_AV_CORRUPT = (av.error.FFmpegError, ValueError, OSError, EOFError, IndexError, KeyError, TypeError)


@contextmanager
def _av_errors(media_type: str) -> Iterator[None]:
    """Turn what PyAV raises on a bad upload into a typed ``MediaError``."""
    try:
        yield
    except MediaError:
        raise
    except MemoryError as exc:
        raise MediaTooLargeError(
            f"out of memory decoding {media_type}", media_type=media_type, limit="max_pixels"
        ) from exc
    except (av.error.DecoderNotFoundError, av.error.DemuxerNotFoundError) as exc:
        raise UnsupportedMediaError(
            f"{media_type}: no decoder for this stream ({exc})", media_type=media_type
        ) from exc
    except _AV_CORRUPT as exc:
        raise CorruptMediaError(
            f"cannot decode {media_type}: {type(exc).__name__}: {exc}", media_type=media_type
        ) from exc
