"""Video and animated-image decoding: which frames to decode, handed to every hash's sink.

vPDQ hashes every frame (or one a second) and so decodes every frame. Decoding is the cost: a
keyframe can be decoded on its own, any other frame needs every reference frame since the last
keyframe. So when every sink is content with samples (PDQ frames), we plan before decoding
(``_video_plan``): keyframes plus evenly spaced sample times, found by one demux without
decoding. Then:

1. Each group of pictures (GOP) is decoded only as far as its last sample time, with
   non-reference frames skipped by the decoder (``skip_frame=NONREF``); a GOP without samples
   costs one packet. Samples take the first decoded frame at or after their time.
2. GOPs are independent, so long videos are split into contiguous chunks decoded in parallel,
   each by its own demuxer (one seek per chunk) and with FFmpeg's own frame threads inside
   each chunk's decoder (``CHUNK_THREAD_TYPE``).

A sink that needs every frame (TMK, a vPDQ file of every frame) gets one sequential pass
instead (``_video_sequential``), which hands the sampled sinks the very frames this planned
decode would have. Either way the video is decoded once for all the sinks.

Animated GIF, WebP and PNG go through Pillow, which composites frames the way browsers show them;
the frame shown at each ``interval`` tick is hashed.

Limits: pixels are checked from the codec parameters before any decode, and on every frame;
the declared and the demuxed duration against ``max_duration_seconds``; hashed frames against
``max_frames``; and wall-clock time against ``max_decode_seconds`` throughout. Every failure
leaves as a typed ``MediaError``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from threading import Lock
from typing import Any

import av
import av.error

from .._errors import CorruptMediaError, MediaError, MediaTooLargeError, UnsupportedMediaError
from ._animation import decode_animation
from ._frames import FrameSink, VideoInfo
from ._limits import Limits
from ._video_plan import (
    MAX_PACKET_ERRORS,
    Chunk,
    Gop,
    GopSampler,
    Plan,
    StreamClock,
    VideoJob,
    make_plan,
    packet_ts,
)
from ._video_sequential import decode_sequential

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

#: Below this many packets to decode, one thread is faster than starting a second demuxer.
_PARALLEL_MIN_PACKETS = 90
_MAX_WORKERS = 4
#: FFmpeg threading inside each chunk's decoder, on top of the chunks' Python threads (PyAV
#: releases the GIL while FFmpeg decodes, so chunks overlap either way). ``None``: one
#: FFmpeg thread per chunk, the earlier plan, which ``benchmarks/bench_video.py`` keeps as a
#: row beside this default so the choice stays measured.
CHUNK_THREAD_TYPE: str | None = "AUTO"


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
    job = VideoJob(data, media_type, demuxer, limits, started)
    with _av_errors(media_type):
        return _decode_av(job, sinks, interval)


# ----------------------------------------------------------------------------- PyAV videos


def _decode_av(job: VideoJob, sinks: Sequence[FrameSink], interval: float) -> VideoInfo:
    container = job.open()
    try:
        clock = StreamClock.of(container, container.streams.video[0])
        job = dataclasses.replace(job, clock=clock)
        plan = make_plan(job, container, interval)
    finally:
        container.close()
    if plan is None:  # no usable keyframe timestamps: decode everything, sample by time
        chunk = decode_sequential(job, sinks, interval, None)
        duration = None
        width = height = None
    elif any(sink.every_frame for sink in sinks):
        # Some hash needs every frame (TMK, a vPDQ list of every frame): one sequential pass
        # that also hands the sampled frames to the other sinks.
        chunk = decode_sequential(job, sinks, interval, plan)
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


def _split(gops: list[Gop], parts: int) -> list[tuple[int, int]]:
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


def _decode_planned(job: VideoJob, plan: Plan, sinks: Sequence[FrameSink]) -> Chunk:
    total = sum(g.cost for g in plan.gops)
    parts = max(1, min(_MAX_WORKERS, os.cpu_count() or 1))
    if total < _PARALLEL_MIN_PACKETS or parts == 1 or len(plan.gops) == 1:
        return _decode_range(job, plan, sinks, 0, len(plan.gops))
    ranges = _split(plan.gops, parts)
    futures: list[Future[Chunk]] = [
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
    job: VideoJob, plan: Plan, sinks: Sequence[FrameSink], first: int, stop: int
) -> Chunk:
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
    job: VideoJob, plan: Plan, sinks: Sequence[FrameSink], first: int, stop: int, *, seek: bool
) -> Chunk | None:
    chunk = Chunk.forked(sinks, job.clock)
    key_index = {g.key_ts: i for i, g in reversed(list(enumerate(plan.gops)))}
    container = job.open()
    try:
        stream = container.streams.video[0]
        context = stream.codec_context
        if CHUNK_THREAD_TYPE is None:
            context.thread_count = 1
        else:
            context.thread_type = CHUNK_THREAD_TYPE
        context.skip_frame = "NONREF"
        if seek:
            container.seek(plan.gops[first].key_ts, stream=stream, backward=True, any_frame=False)
        decoder = _GopDecoder(job, plan, chunk, context)
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.is_keyframe:
                decoder.finish()
                ts = packet_ts(packet)
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

    def __init__(self, job: VideoJob, plan: Plan, chunk: Chunk, context: Any) -> None:
        self.job, self.plan, self.chunk, self.context = job, plan, chunk, context
        self.sampler: GopSampler | None = None
        self.begun = 0
        self.errors = 0

    def begin(self, gop: Gop) -> None:
        self.sampler = GopSampler(gop)
        self.begun += 1

    def feed(self, packet: Any) -> None:
        if self.sampler is None:
            return
        self.job.check_time()
        try:
            frames = self.context.decode(packet)
        except av.error.InvalidDataError:
            # One damaged packet: FFmpeg conceals it in the frames that follow. Many of them
            # mean the stream is garbage.
            self.errors += 1
            if self.errors > MAX_PACKET_ERRORS:
                raise
            return
        self._take(frames)
        if self.sampler is not None and self.sampler.done:
            self.context.flush_buffers()
            self.sampler = None

    def finish(self) -> None:
        if self.sampler is not None:
            self._take(self.context.decode(None))  # drain frames held back for reordering
            self.context.flush_buffers()
            self.sampler = None

    def _take(self, frames: list[Any]) -> None:
        sampler = self.sampler
        assert sampler is not None
        for frame in frames:
            self.chunk.decoded += 1
            if frame.pts is None:
                continue
            t = self.plan.seconds(int(frame.pts))
            if sampler.take(t):
                self.chunk.deliver(self.job, round(t, 6), frame)


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
