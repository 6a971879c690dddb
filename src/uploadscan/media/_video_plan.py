"""What a video decode pass knows before and while decoding, whichever way it decodes.

- ``make_plan``: one demux without decoding (cheap) finds the keyframes, the real duration
  (declared durations are not trusted) and the sample times: every keyframe, plus evenly
  spaced times wherever keyframes are more than ``interval`` seconds apart, so no stretch of
  the video goes unhashed for longer than that. The match rule credits a listed video by the
  time its matched frames cover, so coverage matters more than frame count.
- ``StreamClock``: the clock ffmpeg's CLI runs its frame-rate conversion on, for hashes
  defined by what ``ffmpeg -r`` writes (TMK). It is not the sinks' clock: the sinks'
  timestamps count from the video stream's first packet, ffmpeg's from the container's start.
- ``Chunk.deliver``: hands a decoded frame to the sinks and checks the per-frame limits.

The two decoders (``_video``: GOP by GOP, in parallel; ``_video_sequential``: every frame in
order) share these, so the same video gets the same samples at the same times either way.
"""

from __future__ import annotations

import io
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from .._errors import MediaTooLargeError, UnsupportedMediaError
from ._frames import AvFrame, FrameSink, FrameTiming, StreamTiming
from ._image import check_deadline
from ._limits import Limits

TIME_TOLERANCE = 0.002  # seconds; timestamps are rounded to milliseconds in vPDQ files
MAX_PACKET_ERRORS = 16
_AVFMT_TS_DISCONT = 0x0200


@dataclass(frozen=True)
class StreamClock:
    """ffmpeg's clock for one video stream: ``(pts - origin) * tick`` seconds.

    ffmpeg shifts every input so the container's ``start_time`` (its earliest stream) is 0.
    For formats with timestamp discontinuities (MPEG-TS/PS) ffmpeg 5.1 re-bases on the
    streams it actually reads instead, and the reference reads the video alone (``-an``).
    Frames take ``pts``, else ``dts``; ffmpeg drops frames with neither.
    """

    origin: int
    tick: float
    stream: StreamTiming

    @classmethod
    def of(cls, container: Any, stream: Any) -> StreamClock:
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        start_us = container.start_time
        if (
            start_us is not None
            and container.format.flags & _AVFMT_TS_DISCONT
            and stream.start_time is not None
        ):
            video_us = _rescale_nearest(int(stream.start_time), time_base * 1_000_000)
            start_us = max(int(start_us), video_us)
        origin = 0
        if start_us is not None:
            origin = _rescale_nearest(int(start_us), Fraction(1, 1_000_000) / time_base)
        rate = stream.guessed_rate
        timing = StreamTiming(
            frame_rate=float(rate) if rate else None,
            single_stream=len(container.streams) == 1,
            start_known=stream.start_time is not None,
        )
        return cls(origin, float(time_base), timing)

    def at(self, pts: int, duration: int | None) -> FrameTiming:
        seconds = duration * self.tick if duration else None
        return FrameTiming((pts - self.origin) * self.tick, seconds, self.stream)

    def of_frame(self, frame: Any) -> FrameTiming | None:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            return None
        return self.at(int(pts), int(frame.duration or 0))


def _rescale_nearest(value: int, scale: Fraction) -> int:
    """``av_rescale_q``'s rounding: to nearest, ties away from zero."""
    exact = Fraction(value) * scale
    floor = math.floor(abs(exact) + Fraction(1, 2))
    return floor if exact >= 0 else -floor


@dataclass(frozen=True)
class VideoJob:
    data: bytes
    media_type: str
    demuxer: str
    limits: Limits
    started: float
    clock: StreamClock | None = None

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
class Gop:
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


class GopSampler:
    """Which of one GOP's frames are samples: the first frame at or after the keyframe's
    time (frames before it are the leading frames of an open GOP), then the first frame at
    or after each of the GOP's sample times."""

    def __init__(self, gop: Gop) -> None:
        self.gop = gop
        self.need_key = True
        self.targets = deque(gop.targets)

    @property
    def done(self) -> bool:
        return not self.need_key and not self.targets

    def take(self, t: float) -> bool:
        if self.need_key:
            if t < self.gop.start - TIME_TOLERANCE:
                return False
            self.need_key = False
        elif not (self.targets and t >= self.targets[0] - TIME_TOLERANCE):
            return False
        while self.targets and self.targets[0] <= t + TIME_TOLERANCE:
            self.targets.popleft()
        return True


@dataclass
class Plan:
    gops: list[Gop]
    origin: int  # first timestamp (stream time base): time zero
    time_base: float
    duration: float
    width: int
    height: int

    def seconds(self, pts: int) -> float:
        return (pts - self.origin) * self.time_base


@dataclass
class Chunk:
    """Frames handed to sinks by one decoder: its sinks (forked ones in a parallel chunk)
    and how many frames it decoded and handed over as samples."""

    sinks: list[FrameSink]
    clock: StreamClock | None = None
    decoded: int = 0
    delivered: int = 0

    @classmethod
    def forked(cls, sinks: Sequence[FrameSink], clock: StreamClock | None) -> Chunk:
        return cls([sink.fork() for sink in sinks], clock)

    def deliver(self, job: VideoJob, timestamp: float, frame: Any, *, sampled: bool = True) -> None:
        """Hand ``frame`` to the sinks: a sampled frame (keyframe, or the first at a sample
        time) to all of them, any other frame only to the sinks that take every frame.

        ``max_frames`` bounds the sampled frames, whose hashes are kept; every-frame sinks
        keep running sums, bounded by the duration and decode-time limits."""
        check_frame(job, frame.width, frame.height, self.delivered if sampled else 0)
        if sampled:
            self.delivered += 1
        timing = self.clock.of_frame(frame) if self.clock is not None else None
        wrapped = AvFrame(frame, timing)
        for sink in self.sinks:
            if sampled or sink.every_frame:
                sink.add(timestamp, wrapped)

    def merge_into(self, sinks: Sequence[FrameSink]) -> None:
        for target, mine in zip(sinks, self.sinks, strict=True):
            if target is not mine:
                target.merge(mine)


def packet_ts(packet: Any) -> int | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    return int(ts) if ts is not None else None


def check_stream(job: VideoJob, container: Any) -> tuple[Any, int, int]:
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
        check_duration(job, seconds, "declares")
    return stream, width, height


def check_duration(job: VideoJob, seconds: float, how: str) -> None:
    if seconds > job.limits.max_duration_seconds:
        raise job.too_large(
            f"{how} {seconds:.0f} s, over max_duration_seconds={job.limits.max_duration_seconds}",
            "max_duration_seconds",
        )


def check_frame(job: VideoJob, width: int, height: int, delivered: int) -> None:
    if width * height > job.limits.max_pixels:
        raise job.too_large(
            f"a {width}x{height} frame is over max_pixels={job.limits.max_pixels}", "max_pixels"
        )
    if delivered >= job.limits.max_frames:
        raise job.too_large(f"more than max_frames={job.limits.max_frames} frames", "max_frames")


def make_plan(job: VideoJob, container: Any, interval: float) -> Plan | None:
    """Demux without decoding; None when keyframes cannot be located by timestamp."""
    stream, width, height = check_stream(job, container)
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
        ts = packet_ts(packet)
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
    check_duration(job, duration, "runs for")
    starts = [(k - first) * time_base for k in keys]
    gops = []
    for index, (key, start, packets) in enumerate(zip(keys, starts, counts, strict=True)):
        end = starts[index + 1] if index + 1 < len(starts) else max(duration, start)
        gops.append(Gop(key, start, sample_times(start, end, interval), packets, end))
    return Plan(gops, first, time_base, duration, width, height)


def sample_times(start: float, end: float, interval: float) -> list[float]:
    """Evenly spaced times strictly inside (start, end) so no gap exceeds ``interval``."""
    length = end - start
    count = math.ceil(length / interval - 1e-6) - 1
    if count <= 0:
        return []
    step = length / (count + 1)
    return [start + step * i for i in range(1, count + 1)]
