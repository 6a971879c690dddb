"""The every-frame pass: one sequential decode, every frame in presentation order.

A TMK value is defined by the frames ``ffmpeg -r 15`` writes, a vPDQ file of every frame by
every frame; neither can skip ahead the way the planned decode (``_video``) does. When a sink
asks for every frame, the stream is decoded once, in order, with the codec's own threads, and

- every sampled frame goes to every sink. The samples are the frames the planned decode
  would take, by the same rule (``GopSampler``) among the frames of the same GOP (a frame
  belongs to the GOP of the packet that carried it), so a video's PDQ frames are the same
  frames at the same timestamps whether or not a list also needs TMK;
- every other frame goes to the sinks that take every frame;
- when all of those accept undecoded frames (``FrameSink.accepts_undecoded``), the decoder
  skips non-reference frames (``skip_frame=NONREF``), as the planned decode always does, and
  each skipped frame is announced from its packet's timestamp (``add_undecoded``). The
  decoded frames, and so the samples, are then exactly the planned decode's. When some sink
  needs every picture, non-reference frames are decoded too, and a sample time may then be
  served by a non-reference frame up to one frame earlier than the planned decode's.

Without a plan (no usable keyframe timestamps), or with one whose keyframes share a
timestamp, samples are taken by time: every keyframe, and the first frame ``interval`` after
the last sample.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import av.error

from ._frames import FrameSink, accepts_undecoded
from ._video_plan import (
    MAX_PACKET_ERRORS,
    TIME_TOLERANCE,
    Chunk,
    GopSampler,
    Plan,
    VideoJob,
    check_duration,
    check_stream,
    packet_ts,
)

__all__ = ["decode_sequential"]


class _PlannedSamples:
    """The planned decode's samples, recognised in a sequential pass."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._key_index = {g.key_ts: i for i, g in reversed(list(enumerate(plan.gops)))}
        self._packet_gop: dict[int, int] = {}  # packet pts -> index of the GOP it belongs to
        self._demuxing: int | None = None  # GOP of the packets being demuxed
        self._gop: int | None = None  # GOP of the frames being decoded
        self._sampler: GopSampler | None = None

    def packet(self, packet: Any) -> None:
        if packet.is_keyframe:
            ts = packet_ts(packet)
            index = self._key_index.get(ts) if ts is not None else None
            if index is not None:
                self._demuxing = index
        if packet.pts is not None and self._demuxing is not None:
            self._packet_gop[int(packet.pts)] = self._demuxing

    def forget(self, pts: int) -> None:
        self._packet_gop.pop(pts, None)

    def take(self, frame: Any, t: float) -> bool:
        if frame.pts is None:
            return False  # the planned decode cannot place it either
        gop = self._packet_gop.pop(int(frame.pts), self._gop)
        if gop is None:
            return False  # before the first keyframe
        if gop != self._gop or self._sampler is None:
            self._gop, self._sampler = gop, GopSampler(self._plan.gops[gop])
        return self._sampler.take(t)


class _TickSamples:
    """Samples by time, for streams whose keyframes cannot be located."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0

    def packet(self, packet: Any) -> None:
        pass

    def forget(self, pts: int) -> None:
        pass

    def take(self, frame: Any, t: float) -> bool:
        sampled = bool(frame.key_frame) or t >= self._next - TIME_TOLERANCE
        if sampled:
            self._next = t + self._interval
        return sampled


class _Undecoded:
    """Demuxed packets whose frame has not come out of the decoder yet.

    Frames come out in presentation order, so once a frame with timestamp ``p`` is out, a
    packet with a smaller timestamp that produced nothing was skipped (or could not be
    decoded): it is announced to the sinks that take undecoded frames.
    """

    def __init__(self, job: VideoJob, plan: Plan | None, sinks: Sequence[FrameSink]) -> None:
        self._job = job
        self._plan = plan
        self._sinks = list(sinks)
        self._heap: list[tuple[int, int]] = []  # (pts, duration)
        self._tracking = True
        self._last: int | None = None

    def packet(self, packet: Any) -> None:
        if not self._tracking:
            return
        if packet.pts is None:
            # Skipped frames cannot be placed without timestamps: stop announcing them
            # rather than announce them at the wrong time.
            self._tracking = False
            self._heap.clear()
            return
        heapq.heappush(self._heap, (int(packet.pts), int(packet.duration or 0)))

    def before(self, pts: int | None, samples: _PlannedSamples | _TickSamples) -> None:
        """Settle the packets before a decoded frame at ``pts`` (``None``: the end)."""
        while self._heap and (pts is None or self._heap[0][0] < pts):
            missing, duration = heapq.heappop(self._heap)
            samples.forget(missing)
            if self._last is not None and missing <= self._last:
                continue  # arrived out of order: ffmpeg would not see it either
            self._announce(missing, duration)
        while pts is not None and self._heap and self._heap[0][0] == pts:
            heapq.heappop(self._heap)
        if pts is not None:
            self._last = pts if self._last is None else max(self._last, pts)

    def _announce(self, pts: int, duration: int) -> None:
        clock = self._job.clock
        if not self._sinks or clock is None:
            return
        timing = clock.at(pts, duration)
        timestamp = self._plan.seconds(pts) if self._plan is not None else timing.time
        for sink in self._sinks:
            sink.add_undecoded(round(timestamp, 6), timing)


def _timestamp(frame: Any, plan: Plan | None, count: int, rate: float) -> float:
    """The sinks' time of a frame: from the stream's first packet, as the planned decode
    counts it, else the decoder's own time, else the frame's position at the stream's rate."""
    if plan is not None and frame.pts is not None:
        return plan.seconds(int(frame.pts))
    if frame.time is not None:
        return float(frame.time)
    return (count - 1) / rate


def decode_sequential(
    job: VideoJob, sinks: Sequence[FrameSink], interval: float, plan: Plan | None
) -> Chunk:
    """Decode every frame in order, handing the sinks what the module docstring says."""
    chunk = Chunk(list(sinks), job.clock)
    every = [s for s in sinks if s.every_frame]
    skip = bool(every) and all(accepts_undecoded(s) for s in every)
    container = job.open()
    try:
        stream, _, _ = check_stream(job, container)
        context = stream.codec_context
        context.thread_type = "AUTO"
        if skip:
            context.skip_frame = "NONREF"
        rate = float(stream.average_rate or 25)
        # A plan is followed by timestamps; when keyframes share one (a broken muxer stamps
        # every packet 0) its GOPs cannot be told apart that way, so sample as without a
        # plan: the keyframes the planned decode takes, and by time.
        followable = plan is not None and len({g.key_ts for g in plan.gops}) == len(plan.gops)
        samples: _PlannedSamples | _TickSamples = (
            _PlannedSamples(plan) if plan is not None and followable else _TickSamples(interval)
        )
        undecoded = _Undecoded(job, plan, every if skip else [])
        errors = 0
        for packet in container.demux(stream):
            job.check_time()
            if packet.size:
                samples.packet(packet)
                undecoded.packet(packet)
            try:
                frames = packet.decode()  # the last, empty packet drains the decoder
            except av.error.InvalidDataError:
                # One damaged packet: FFmpeg conceals it in the frames that follow. Many of
                # them mean the stream is garbage.
                errors += 1
                if errors > MAX_PACKET_ERRORS:
                    raise
                continue
            for frame in frames:
                chunk.decoded += 1
                if frame.pts is not None:
                    undecoded.before(int(frame.pts), samples)
                t = _timestamp(frame, plan, chunk.decoded, rate)
                chunk.deliver(job, round(t, 6), frame, sampled=samples.take(frame, t))
                check_duration(job, t, "runs for")
        undecoded.before(None, samples)
    finally:
        container.close()
    return chunk
