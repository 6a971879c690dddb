"""From decoded video frames to the PDQ hashes we keep: luma, border trimming, dedup, quality.

Shared by the video decoder (``_video``) and the animated-image path. Everything here works on
the luma plane, because PDQ only looks at luma (0.299 R + 0.587 G + 0.114 B): for 8-bit YUV
frames that is the Y plane rescaled from video range, which saves the colour conversion the
reference pipeline pays for on every frame.

Letterbox and pillarbox bars: hash lists are made by vPDQ from frames as decoded, bars included.
An upload that adds bars to a listed video therefore only matches after trimming them, and an
upload of a listed video that had bars only matches untrimmed. So when a frame has a uniform
border we emit both hashes at the same timestamp (untrimmed first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..hashing import _pdq_algorithm as _pdq
from ..hashing._result import FrameHash
from ..hashing._vpdq import DEFAULT_MAX_SPAN, MIN_QUALITY
from ._borders import content_box

Luma = npt.NDArray[np.float32]

#: Frames whose PDQ differs from the last kept frame by at most this many bits are duplicates.
DEDUP_DISTANCE = 6


def block_mean(luma: Luma, factor: int) -> Luma:
    """Mean over ``factor`` x ``factor`` blocks, partial edge blocks averaged over their pixels
    (what ``Image.reduce`` does, and what ``_pdq.pdq_from_luma`` expects of a reduced plane)."""
    height, width = luma.shape
    rows = np.add.reduceat(luma, np.arange(0, height, factor), axis=0)
    both = np.add.reduceat(rows, np.arange(0, width, factor), axis=1)
    row_counts = np.minimum(factor, height - np.arange(0, height, factor)).astype(np.float32)
    col_counts = np.minimum(factor, width - np.arange(0, width, factor)).astype(np.float32)
    out: Luma = (both / np.outer(row_counts, col_counts)).astype(np.float32)
    return out


def hash_luma(
    luma: Luma, *, dihedral: bool, original_size: tuple[int, int] | None = None
) -> tuple[tuple[str, ...], int]:
    """PDQ (and its dihedral variants) of a luma plane.

    Large planes are block-averaged first, as ``_pdq`` does for still images; the PDQ operator
    is computed from the original size (``original_size`` when ``luma`` is already a reduced
    plane, else its own), so the result stays the reference algorithm's.
    """
    height, width = luma.shape
    factor = min(height, width) // _pdq.REDUCE_MIN_SIDE
    reduced = block_mean(luma, factor) if factor > 1 else luma
    size = original_size if original_size is not None else (width, height)
    return _pdq.pdq_variants_from_luma(reduced, size, dihedral=dihedral)


def _hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@dataclass
class FrameCollector:
    """Hashes selected frames and keeps the ones worth looking up.

    Drops frames of quality < 50 (they match everything) and frames within
    ``DEDUP_DISTANCE`` bits of the last kept one, unless that one is ``DEFAULT_MAX_SPAN``
    seconds old: a listed frame stands for at most that much time, so keeping one that often
    lets our own output serve as a list without holes in its time coverage.
    """

    dihedral: bool = False
    trim: bool = True
    frames: list[FrameHash] = field(default_factory=list)
    variants: list[tuple[str, ...]] = field(default_factory=list)
    _last: dict[bool, tuple[float, str]] = field(default_factory=dict)

    def add(
        self, timestamp: float, luma: Luma, original_size: tuple[int, int] | None = None
    ) -> None:
        """Hash one frame. ``original_size`` (width, height) when ``luma`` is a reduced plane."""
        height, width = luma.shape
        size = original_size if original_size is not None else (width, height)
        self._add(timestamp, luma, size, trimmed=False)
        if self.trim:
            box = content_box(luma)
            if box is not None:
                top, bottom, left, right = box
                scale_x, scale_y = size[0] / width, size[1] / height
                cropped = (round((right - left) * scale_x), round((bottom - top) * scale_y))
                self._add(timestamp, luma[top:bottom, left:right], cropped, trimmed=True)

    def _add(self, timestamp: float, luma: Luma, size: tuple[int, int], *, trimmed: bool) -> None:
        hashes, quality = hash_luma(luma, dihedral=self.dihedral, original_size=size)
        if quality < MIN_QUALITY:
            return
        last = self._last.get(trimmed)
        if (
            last is not None
            and timestamp - last[0] < DEFAULT_MAX_SPAN
            and _hamming(last[1], hashes[0]) <= DEDUP_DISTANCE
        ):
            return
        self._last[trimmed] = (timestamp, hashes[0])
        self.frames.append(FrameHash(timestamp=timestamp, pdq=hashes[0], quality=quality))
        if self.dihedral:
            self.variants.append(hashes)

    def merge(self, other: FrameCollector) -> None:
        """Append a later chunk's frames (chunks are hashed in parallel, in time order)."""
        self.frames.extend(other.frames)
        self.variants.extend(other.variants)


def rgb_luma(rgb: npt.NDArray[np.uint8]) -> Luma:
    """PDQ's luma of an (H, W, 3) RGB array.

    Channel by channel into one float32 plane: converting the whole (H, W, 3) array to float
    first would cost 12 bytes per pixel (1.2 GB for a 100-megapixel frame).
    """
    out: Luma = rgb[..., 0].astype(np.float32)
    out *= np.float32(0.299)
    for channel, weight in ((1, 0.587), (2, 0.114)):
        part = rgb[..., channel].astype(np.float32)
        part *= np.float32(weight)
        out += part
    return out


#: 8-bit formats whose first plane is luma (Y), so PDQ can read it without colour conversion.
_Y_PLANE_FORMATS = frozenset(
    {
        "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
        "yuv440p", "yuvj440p", "yuv411p", "yuv410p", "nv12", "nv21", "nv16", "gray",
    }
)  # fmt: skip
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def frame_luma(frame: Any) -> Luma:
    """PDQ luma (0..255, float32) of a decoded ``av.VideoFrame``.

    For 8-bit YUV the Y plane is the luma PDQ computes from RGB (BT.601 weights), up to the
    video-range scaling undone here and clipping of saturated colours.
    """
    if frame.format.name in _Y_PLANE_FORMATS:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        y = rows[: frame.height, : frame.width].astype(np.float32)
        if frame.format.name.startswith("yuvj") or frame.format.name == "gray":
            return y
        if frame.color_range == _FULL_RANGE:
            return y
        y -= 16.0
        y *= 255.0 / 219.0
        out: Luma = np.clip(y, 0.0, 255.0, out=y)
        return out
    return rgb_luma(frame.to_ndarray(format="rgb24"))


@dataclass(frozen=True, slots=True)
class VideoHashes:
    """The kept frame hashes of one video, in time order.

    ``variants``: with ``dihedral=True``, one tuple per frame with the PDQ of the frame and its
    7 rotations/mirrors (``_pdq`` order: original, rot90, rot180, rot270, flip x, flip y,
    flip +1, flip -1). ``frames_decoded`` counts every frame the decoder produced.
    """

    frames: tuple[FrameHash, ...]
    duration: float | None
    width: int | None
    height: int | None
    frames_decoded: int
    variants: tuple[tuple[str, ...], ...] = ()
