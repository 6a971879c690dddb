"""Building a TMK+PDQF value from frames in presentation order, in bounded memory.

What the reference hashes is the 64x64 RGB frame ``ffmpeg -s 64:64 -r 15`` writes (swscale's
default bicubic, aspect ratio discarded). At that size PDQ skips its blur and decimation, so
the frame feature (PDQF) is just the 16x16 low-frequency DCT of the luma,
``D @ luma @ D.T`` with PDQ's 16x64 DCT matrix: two small products, done here for a batch of
frames at once. Everything after that is linear in the features, which buys three things:

- frames fold in by batches, one product each (``_TmkSums``);
- a run of n identical frames (the copies ffmpeg writes across a gap) costs O(1): the cos/sin
  weights of a run are a geometric series;
- the hash of the picture inside the video's bars (``_tmk_bars``) is one more product per
  batch, on a small grey thumbnail: the crop and its resampling to 64x64 fold into the DCT.

``TmkAccumulator`` is driven by a decode loop, one call per input frame. The frame's pixels
are asked for lazily, only when ffmpeg's rules keep it (half the frames of a 30 fps video
are never resized). A frame that exists but was not decoded (the decoder skipped a
non-reference frame) is kept or dropped on its timestamp like any other; if kept, it gets
the time-weighted blend of the decoded frames around it.

Normalisation follows the reference (``tmkfv.cpp``): the pure average is the mean of the raw
features; the cos/sin sums use per-frame L2-normalised features; at the end each (period,
harmonic) cos vector and sin vector is L2-normalised on its own and scaled by sqrt(a_j); a
video without frames leaves everything zero. Sums are float64 (the reference's float32
differs by about 1e-6 in the scores).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import HashTypeError
from ..media._frames import rgb_luma
from ._pdq_algorithm import DCT_MATRIX
from ._tmk_bars import BoxVote, ContentBox, resample_matrix
from ._tmk_format import (
    FEATURE_DIMENSION,
    FOURIER_COEFFICIENTS,
    FRAMES_PER_SECOND,
    PERIODS,
    TmkHash,
)
from ._tmk_rate import RateConverter

__all__ = ["FRAME_SIZE", "FrameInput", "TmkAccumulator", "pdqf_features"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
FrameArray = npt.NDArray[Any]
#: A 64x64x3 RGB or 64x64 luma array, or a zero-argument callable giving one.
FrameInput = FrameArray | Callable[[], FrameArray]

#: Side of the square RGB frame the reference hashes (ffmpeg ``-s 64:64``).
FRAME_SIZE = 64
_INT32_MAX = 2**31 - 1


def _product(a: F64, b: F64) -> F64:
    """``a @ b`` for the per-batch products, in numpy's own single-threaded loop.

    OpenBLAS hands products of this size (about a million multiply-adds) to its thread pool;
    next to a multi-threaded decoder on a busy machine those threads wait on each other, and
    one 128x32 @ 32x256 product measured 16 ms instead of 0.7 ms.
    """
    out: F64 = np.einsum("ij,jk->ik", a, b)
    return out


def pdqf_features(luma: npt.NDArray[Any]) -> F64:
    """PDQF of a batch of 64x64 luma frames: (B, 64, 64) -> (B, 256)."""
    frames = np.asarray(luma, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE):
        raise HashTypeError(f"PDQF needs 64x64 frames, got {frames.shape[1:]}")
    half = np.einsum("ij,bjk->bik", DCT_MATRIX, frames)
    blocks = np.einsum("bik,lk->bil", half, DCT_MATRIX)
    out: F64 = blocks.reshape(len(frames), FEATURE_DIMENSION)
    return out


@lru_cache(maxsize=8)
def _crop_operators(shape: tuple[int, int], box: ContentBox) -> tuple[F64, F64]:
    """PDQF of the box cropped from a thumbnail and resampled to 64x64, as
    ``left @ thumbnail @ right.T`` ((16, h) and (16, w))."""
    height, width = shape
    rows = resample_matrix(height, box.top * height, box.bottom * height, FRAME_SIZE)
    cols = resample_matrix(width, box.left * width, box.right * width, FRAME_SIZE)
    left: F64 = DCT_MATRIX @ rows
    right: F64 = DCT_MATRIX @ cols
    return left, right


class _TmkSums:
    """Running sums for one stream of frame features.

    Output frame ``t`` with unit feature ``f`` adds ``f cos(2 pi j t / T)`` and
    ``f sin(...)`` to the (T, j) vectors; the raw feature goes into the pure average.
    """

    def __init__(self) -> None:
        p, c, d = len(PERIODS), len(FOURIER_COEFFICIENTS), FEATURE_DIMENSION
        self.count = 0
        self.pure = np.zeros(d, dtype=np.float64)
        self.cos = np.zeros((p * c, d), dtype=np.float64)
        self.sin = np.zeros((p * c, d), dtype=np.float64)
        self._periods = np.repeat(np.asarray(PERIODS, dtype=np.int64), c)[:, None]
        self._harmonics = np.tile(np.arange(c, dtype=np.int64), p)[:, None]
        self._step = np.exp(2j * np.pi * self._harmonics / self._periods)

    def _weights(self, starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> Any:
        """Complex ``sum_{k<n} e^{i theta (t + k)}`` per row and (T, j): (P*C, B)."""
        periods, harmonics = self._periods, self._harmonics
        angle = 2.0 * np.pi / periods
        # Phases reduced modulo T in integers first: exact however long the video.
        first = np.exp(1j * angle * ((harmonics * (starts[None, :] % periods)) % periods))
        weights = first * counts[None, :].astype(np.float64)
        runs = counts > 1
        if np.any(runs):
            n = counts[None, runs]
            ratio = np.exp(1j * angle * ((harmonics * (n % periods)) % periods))
            with np.errstate(invalid="ignore", divide="ignore"):
                series = (1.0 - ratio) / (1.0 - self._step)
            series = np.where(harmonics == 0, n.astype(np.complex128), series)
            weights[:, runs] = first[:, runs] * series
        return weights

    def add(
        self, features: F64, starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
    ) -> None:
        """Fold in raw features (B, 256) written at output frames starts[b] .. + counts[b]."""
        self.count += int(np.sum(counts))
        self.pure += _product(counts.astype(np.float64)[None, :], features)[0]
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        unit = np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)
        weights = self._weights(starts, counts)
        self.cos += _product(np.ascontiguousarray(weights.real), unit)
        self.sin += _product(np.ascontiguousarray(weights.imag), unit)

    def finish(self) -> TmkHash:
        p, c, d = len(PERIODS), len(FOURIER_COEFFICIENTS), FEATURE_DIMENSION
        if self.count > _INT32_MAX:
            raise HashTypeError(f"{self.count} frames do not fit the .tmk frame count")
        cos = self.cos.reshape(p, c, d).copy()
        sin = self.sin.reshape(p, c, d).copy()
        pure = self.pure.copy()
        if self.count > 0:  # the reference leaves an empty video all zeros
            pure = (pure / self.count).astype(np.float32).astype(np.float64)
            scale = np.sqrt(FOURIER_COEFFICIENTS.astype(np.float64))[None, :, None]
            for vectors in (cos, sin):
                norms = np.linalg.norm(vectors, axis=2, keepdims=True)
                np.divide(vectors, norms, out=vectors, where=norms > 0)
                vectors *= scale
        return TmkHash(
            frames_per_second=FRAMES_PER_SECOND,
            periods=PERIODS,
            fourier_coefficients=FOURIER_COEFFICIENTS,
            frame_count=self.count,
            pure_average=pure.astype(np.float32),
            cos_features=cos.astype(np.float32),
            sin_features=sin.astype(np.float32),
        )


def _as_luma(frame: FrameArray) -> F32:
    array = np.asarray(frame)
    if array.shape == (FRAME_SIZE, FRAME_SIZE, 3):
        return rgb_luma(array)
    if array.shape == (FRAME_SIZE, FRAME_SIZE):
        return array.astype(np.float32)
    raise HashTypeError(f"a TMK frame is 64x64 RGB or 64x64 luma, got shape {array.shape}")


class _Source:
    """One input frame, resolved lazily and at most once."""

    __slots__ = ("_frame", "_luma", "_thumb", "_thumb_value", "missing", "timestamp")

    def __init__(
        self, timestamp: float, frame: FrameInput | None, thumb: FrameInput | None
    ) -> None:
        self.timestamp = timestamp
        self.missing = frame is None
        self._frame = frame
        self._thumb = thumb
        self._luma: F32 | None = None
        self._thumb_value: FrameArray | None = None

    def luma(self) -> F32:
        if self._luma is None:
            frame = self._frame
            if frame is None:
                raise HashTypeError("an undecoded frame has no picture")
            self._luma = _as_luma(frame() if callable(frame) else frame)
            self._frame = None  # let the decoded frame go as soon as it is reduced
        return self._luma

    def thumbnail(self) -> FrameArray | None:
        if self._thumb_value is None and self._thumb is not None:
            thumb = self._thumb
            self._thumb_value = np.asarray(thumb() if callable(thumb) else thumb)
            self._thumb = None
        return self._thumb_value


@dataclass(slots=True)
class _Row:
    luma: F32
    start: int
    count: int


class TmkAccumulator:
    """Builds a reference-compatible TMK+PDQF value from frames fed in presentation order.

    ``add_frame(timestamp, frame, duration=..., thumbnail=...)`` per input frame: the time
    in seconds on ffmpeg's clock (from the container's start), the 64x64 picture (array or
    callable), the frame's duration in seconds. The stream facts (its guessed frame rate,
    whether it is the container's only stream, whether its start is known) set up ffmpeg's
    rules (``RateConverter``). ``frame=None`` declares a frame that was not decoded.

    ``trim_bars`` also builds the value of the picture inside the video's bars; it needs
    ``thumbnail`` (the whole frame's grey levels, ~128x128, area-averaged) for as long as
    ``wants_thumbnails`` says. ``trimmed_hash`` and ``content_box`` are set by ``finish``.

    Memory: the last input frame, a batch of at most ``batch_size`` 64x64 frames, at most
    ``max_missing_run`` undecoded frames waiting for a decoded neighbour, and while the bar
    box is being decided at most ``warmup_frames`` thumbnails (2.4 MB at 128x128). Not
    thread-safe: one accumulator per video.
    """

    def __init__(
        self,
        *,
        stream_frame_rate: float | None = None,
        single_stream: bool = False,
        start_known: bool = True,
        trim_bars: bool = False,
        batch_size: int = 32,
        warmup_frames: int = 150,
        max_missing_run: int = 16,
    ) -> None:
        self._rate = RateConverter(
            FRAMES_PER_SECOND,
            stream_frame_rate,
            single_stream=single_stream,
            start_known=start_known,
        )
        self._sums = _TmkSums()
        self._batch: list[_Row] = []
        self._batch_size = max(1, batch_size)
        self._previous: _Source | None = None  # the frame ffmpeg repeats over a gap
        self._decoded: _Source | None = None  # last frame with pixels, for interpolation
        self._pending: list[tuple[_Source, int, int]] = []  # undecoded, awaiting a neighbour
        self._max_missing_run = max_missing_run
        self._next_index = 0
        self._finished: TmkHash | None = None
        self._trim = trim_bars
        self._trim_sums = _TmkSums() if trim_bars else None
        self._vote = BoxVote() if trim_bars else None
        self._box_decided = not trim_bars
        self._box: ContentBox | None = None
        self._warmup: list[tuple[FrameArray, int, int]] = []
        self._warmup_limit = warmup_frames
        self._trim_batch: list[tuple[FrameArray, int, int]] = []
        self.trimmed_hash: TmkHash | None = None
        self.frames_in = 0
        self.frames_missing = 0

    @property
    def frames_out(self) -> int:
        """15 fps frames written so far (the value's frame count at the end)."""
        return self._next_index

    @property
    def content_box(self) -> ContentBox | None:
        """The video's bar box (None: no bars, or not decided yet)."""
        return self._box

    @property
    def wants_thumbnails(self) -> bool:
        """False once thumbnails can change nothing (spares the driver a resize)."""
        return self._trim and (not self._box_decided or self._box is not None)

    def will_keep(self, timestamp: float, duration: float | None = None) -> bool:
        """Whether a frame at ``timestamp`` would be written at least once (no state change).
        A dropped frame may still be repeated later if the next one comes late."""
        return self._rate.copy().push(timestamp, duration)[1] > 0

    def add_frame(
        self,
        timestamp: float,
        frame: FrameInput | None,
        *,
        duration: float | None = None,
        thumbnail: FrameInput | None = None,
    ) -> int:
        """Feed one input frame; returns how many 15 fps frames this wrote."""
        if self._finished is not None:
            raise HashTypeError("TMK accumulator: add_frame after finish")
        if not math.isfinite(timestamp):
            raise HashTypeError(f"TMK accumulator: timestamp must be finite, got {timestamp!r}")
        source = _Source(timestamp, frame, thumbnail if self._trim else None)
        self.frames_in += 1
        self.frames_missing += source.missing
        previous, current, kept = self._rate.push(timestamp, duration)
        if previous and self._previous is not None:
            self._emit(self._previous, previous)
        if not source.missing:
            self._resolve_pending(source)
            self._decoded = source
        if current:
            self._emit(source, current)
        if kept:
            self._previous = source
        if len(self._pending) > self._max_missing_run:
            self._resolve_pending(None)
        return previous + current

    def _emit(self, source: _Source, count: int) -> None:
        start = self._next_index
        self._next_index += count
        if source.missing:
            self._pending.append((source, start, count))
        else:
            thumb = source.thumbnail() if self.wants_thumbnails else None
            self._write(source.luma(), thumb, start, count)

    def _resolve_pending(self, following: _Source | None) -> None:
        """Give undecoded frames a picture: linear in time between the decoded neighbours."""
        pending, self._pending = self._pending, []
        before = self._decoded
        for source, start, count in pending:
            if before is None and following is None:
                continue  # nothing decoded at all: those frames stay unhashed
            weight = 0.0
            if before is not None and following is not None:
                span = following.timestamp - before.timestamp
                weight = (source.timestamp - before.timestamp) / span if span > 0 else 0.5
                weight = min(max(weight, 0.0), 1.0)
            elif before is None:
                weight = 1.0
            luma = _blend(before, following, weight, _Source.luma)
            thumb = None
            if self.wants_thumbnails:
                thumb = _blend(before, following, weight, _Source.thumbnail)
            if luma is not None:
                self._write(np.asarray(luma, dtype=np.float32), thumb, start, count)

    def _write(self, luma: F32, thumb: FrameArray | None, start: int, count: int) -> None:
        self._batch.append(_Row(luma, start, count))
        if len(self._batch) >= self._batch_size:
            self._flush_batch()
        if self._trim and thumb is not None:
            self._write_trimmed(thumb, start, count)

    def _flush_batch(self) -> None:
        if not self._batch:
            return
        rows, self._batch = self._batch, []
        features = pdqf_features(np.stack([r.luma for r in rows]))
        starts = np.array([r.start for r in rows], dtype=np.int64)
        counts = np.array([r.count for r in rows], dtype=np.int64)
        self._sums.add(features, starts, counts)

    # -- the picture inside the bars

    def _write_trimmed(self, thumb: FrameArray, start: int, count: int) -> None:
        if not self._box_decided:
            assert self._vote is not None
            self._vote.offer(start, thumb)
            self._warmup.append((thumb, start, count))
            if self._vote.ready or len(self._warmup) >= self._warmup_limit:
                self._decide_box()
            return
        if self._box is not None:
            self._trim_batch.append((thumb, start, count))
            if len(self._trim_batch) >= self._batch_size:
                self._flush_trimmed()

    def _decide_box(self) -> None:
        assert self._vote is not None
        self._box = self._vote.decide()
        self._box_decided = True
        warmup, self._warmup = self._warmup, []
        if self._box is not None:
            for row in warmup:
                self._trim_batch.append(row)
                if len(self._trim_batch) >= self._batch_size:
                    self._flush_trimmed()

    def _flush_trimmed(self) -> None:
        rows, self._trim_batch = self._trim_batch, []
        if not rows or self._box is None or self._trim_sums is None:
            return
        by_shape: dict[tuple[int, int], list[int]] = {}
        for index, (thumb, _, _) in enumerate(rows):
            by_shape.setdefault((thumb.shape[0], thumb.shape[1]), []).append(index)
        for shape, indices in by_shape.items():
            left, right = _crop_operators(shape, self._box)
            stack = np.stack([np.asarray(rows[i][0], dtype=np.float64) for i in indices])
            half = np.einsum("ij,bjk->bik", left, stack)
            features = np.einsum("bik,lk->bil", half, right).reshape(len(indices), -1)
            starts = np.array([rows[i][1] for i in indices], dtype=np.int64)
            counts = np.array([rows[i][2] for i in indices], dtype=np.int64)
            self._trim_sums.add(features, starts, counts)

    # -- the end

    def finish(self) -> TmkHash:
        """Write ffmpeg's end-of-stream repeats, flush the batches, return the value."""
        if self._finished is not None:
            return self._finished
        repeat = self._rate.flush()
        if repeat and self._previous is not None:
            self._emit(self._previous, repeat)
        self._resolve_pending(None)
        self._flush_batch()
        if self._trim and not self._box_decided:
            self._decide_box()
        self._flush_trimmed()
        self._finished = self._sums.finish()
        if self._trim_sums is not None and self._box is not None:
            self.trimmed_hash = self._trim_sums.finish()
        return self._finished


def _blend(
    before: _Source | None,
    after: _Source | None,
    weight: float,
    get: Callable[[_Source], FrameArray | None],
) -> FrameArray | None:
    a = get(before) if before is not None and weight < 1.0 else None
    b = get(after) if after is not None and weight > 0.0 else None
    if a is None:
        return b
    if b is None or a.shape != b.shape:
        return a
    out: FrameArray = (1.0 - weight) * a.astype(np.float32) + weight * b.astype(np.float32)
    return out
