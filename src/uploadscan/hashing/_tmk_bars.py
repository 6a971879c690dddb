"""Letterbox, pillarbox and windowbox bars for TMK: one content box per video.

Bars dominate PDQF. A re-encode that adds bars scores 0.0-0.7 against the original at level
1 (a miss), and two unrelated windowboxed videos score 0.87 (a false match) in the reference
itself. So the hasher also hashes the picture inside the bars, from the same decode, and the
upload is queried with that too.

PDQ's frame trimming (``media._borders``) works frame by frame, which is right for hashes of
single frames. A TMK value sums every frame, so every frame must be cropped the same way, or
a dark scene whose edges look like more bar would be hashed differently from the original.
Bars added by re-encoding are constant for the whole video, so the box is decided once:

- per frame (a small grey thumbnail of the whole frame), a bar is a run of flat lines at the
  level of the outermost line, which must be dark or perfectly flat (a coloured pad); a side
  counts from 3% of the dimension, and the picture must keep at least 25%;
- a frame may *vote* only when it is confident: a textured picture, and every bar ending at a
  clear edge. Black frames, fades and dark scenes do not vote; confident frames without bars
  vote for "no bars";
- votes are at least ``spacing`` 15 fps frames apart; once ``needed`` have voted, each side is
  the median vote (robust to dark-edged scenes, which overestimate bars, and to logos or
  subtitles in the bars, which underestimate them).

Not handled: bars that appear only later in the video, captions across the whole first
seconds, and non-uniform fill (a blurred copy of the picture as the background).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BoxVote", "ContentBox", "FrameBars", "frame_bars", "resample_matrix"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ContentBox:
    """The picture inside the bars, as fractions of the frame (top < bottom, left < right)."""

    top: float
    bottom: float
    left: float
    right: float

    @property
    def area(self) -> float:
        return (self.bottom - self.top) * (self.right - self.left)


# Thresholds for 8-bit grey levels on a small area-averaged thumbnail (noise averaged out).
_BAR_LINE_STD = 5.0
_BAR_LEVEL_TOLERANCE = 6.0
_BAR_DARK_LEVEL = 40.0  # video-range black is 16
_BAR_FLAT_STD = 2.0
_BAR_MIN_SHARE = 0.03
_CONTENT_MIN_SHARE = 0.25  # a portrait video pillarboxed into 16:9 keeps 32% of the width
_CONTENT_MIN_STD = 12.0
_EDGE_MIN_CONTRAST = 10.0


def _bar_run(lines: F32) -> tuple[int, float]:
    """Leading bar lines of ``lines`` (n, m) and the bar's level (n when all are bars)."""
    means = lines.mean(axis=1)
    stds = lines.std(axis=1)
    level = float(means[0])
    if not (level <= _BAR_DARK_LEVEL or stds[0] <= _BAR_FLAT_STD):
        return 0, level
    bar = (stds <= _BAR_LINE_STD) & (np.abs(means - level) <= _BAR_LEVEL_TOLERANCE)
    stops = np.flatnonzero(~bar)
    return (int(stops[0]) if stops.size else len(lines)), level


@dataclass(frozen=True, slots=True)
class FrameBars:
    """Bars found in one frame: ``box`` None when there are none; ``confident`` whether the
    frame may vote on the video's box at all."""

    box: ContentBox | None
    confident: bool


def frame_bars(thumbnail: npt.NDArray[Any]) -> FrameBars:
    """Uniform bars around one frame's grey thumbnail (any size; ~128x128 is plenty)."""
    plane = np.asarray(thumbnail, dtype=np.float32)
    height, width = plane.shape
    top, level_t = _bar_run(plane)
    bottom_run, level_b = _bar_run(plane[::-1])
    left, level_l = _bar_run(plane.T)
    right_run, level_r = _bar_run(plane.T[::-1])
    bottom, right = height - bottom_run, width - right_run
    if bottom - top < _CONTENT_MIN_SHARE * height or right - left < _CONTENT_MIN_SHARE * width:
        return FrameBars(None, False)  # mostly uniform: a black frame, a fade, a title card
    confident = float(plane[top:bottom, left:right].std()) >= _CONTENT_MIN_STD
    sides = [
        (top, height, plane[top] if top else None, level_t),
        (bottom_run, height, plane[bottom - 1] if bottom_run else None, level_b),
        (left, width, plane[:, left] if left else None, level_l),
        (right_run, width, plane[:, right - 1] if right_run else None, level_r),
    ]
    bars = [run >= _BAR_MIN_SHARE * size for run, size, _, _ in sides]
    if not any(bars):
        return FrameBars(None, confident)
    for (_, _, edge, level), is_bar in zip(sides, bars, strict=True):
        if is_bar and edge is not None:
            confident = confident and float(np.mean(np.abs(edge - level))) >= _EDGE_MIN_CONTRAST
    box = ContentBox(
        top / height if bars[0] else 0.0,
        bottom / height if bars[1] else 1.0,
        left / width if bars[2] else 0.0,
        right / width if bars[3] else 1.0,
    )
    return FrameBars(box, confident)


class BoxVote:
    """Chooses one content box per video from its confident frames (module docstring)."""

    def __init__(self, needed: int = 9, spacing: int = 10) -> None:
        self.needed = needed
        self.spacing = spacing
        self.votes: list[tuple[float, float, float, float]] = []
        self._last_vote = -(10**9)

    def offer(self, index: int, thumbnail: npt.NDArray[Any]) -> None:
        """Let the frame written at 15 fps frame ``index`` vote, if it is due and confident."""
        if index - self._last_vote < self.spacing:
            return
        found = frame_bars(thumbnail)
        if not found.confident:
            return
        box = found.box or ContentBox(0.0, 1.0, 0.0, 1.0)
        self.votes.append((box.top, 1.0 - box.bottom, box.left, 1.0 - box.right))
        self._last_vote = index

    @property
    def ready(self) -> bool:
        return len(self.votes) >= self.needed

    def decide(self) -> ContentBox | None:
        """The median box of the votes so far; None for no bars or no confident frame."""
        if not self.votes:
            return None
        sides = [float(v) for v in np.median(np.asarray(self.votes), axis=0)]
        top, bottom, left, right = (s if s >= _BAR_MIN_SHARE else 0.0 for s in sides)
        if not any((top, bottom, left, right)):
            return None
        return ContentBox(top, 1.0 - bottom, left, 1.0 - right)


def resample_matrix(size: int, start: float, stop: float, out: int) -> F64:
    """(out, size) linear map from input pixels ``start..stop`` (fractional) to ``out``
    samples: a triangle filter, widened when shrinking so the crop stays anti-aliased."""
    scale = (stop - start) / out
    support = max(1.0, scale)
    centres = start + (np.arange(out, dtype=np.float64) + 0.5) * scale - 0.5
    lo, hi = max(0, math.floor(start + 1e-9)), min(size, math.ceil(stop - 1e-9))
    if hi <= lo:
        lo, hi = max(0, min(size - 1, int(start))), max(1, min(size, int(start) + 1))
    pixels = np.arange(lo, hi, dtype=np.float64)[None, :]
    weights = np.maximum(0.0, 1.0 - np.abs(pixels - centres[:, None]) / support)
    empty = weights.sum(axis=1) <= 0
    if np.any(empty):  # a sample between pixel centres at the crop's edge: nearest pixel
        nearest = np.clip(np.rint(centres[empty]), lo, hi - 1).astype(np.int64) - lo
        weights[np.flatnonzero(empty), nearest] = 1.0
    weights /= weights.sum(axis=1, keepdims=True)
    matrix = np.zeros((out, size), dtype=np.float64)
    matrix[:, lo:hi] = weights
    return matrix
