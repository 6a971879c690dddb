"""Decoded pictures as the hashers see them: luma planes, and the frames of a decode pass.

PDQ only looks at luma (0.299 R + 0.587 G + 0.114 B). For 8-bit YUV video frames that is the
Y plane rescaled from video range, which saves the colour conversion the reference pipeline
pays for on every frame; for Pillow images it is the reference's RGB conversion, on a plane
reduced with ``Image.reduce`` when large (the hashers are told the original size).

``Frame`` is what the video decoder and the animation decoder hand to every hash type's
``FrameSink``: conversions are computed on demand, once per frame, whoever asks first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

Luma = npt.NDArray[np.float32]
RGB = npt.NDArray[np.uint8]

#: Short side below which ``Image.reduce`` is not applied to decoded (non-draft) images.
REDUCE_MIN_SIDE = 512
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class Frame(Protocol):
    """One decoded frame of a video or animation."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as decoded."""
        ...

    def luma(self) -> tuple[Luma, tuple[int, int]]:
        """The luma plane, possibly reduced, and the (width, height) it stands for."""
        ...

    def rgb(self, width: int, height: int) -> RGB:
        """The frame scaled to ``width`` x ``height``, as (height, width, 3) uint8 RGB."""
        ...


class FrameSink(Protocol):
    """Receives the frames of one video decode pass.

    The decoder splits long videos into chunks decoded in parallel: each chunk gets a sink
    from ``fork()``, and the chunks are merged back in time order with ``merge``. A ``Frame``
    is only valid during ``add``: the decoder reuses its buffers. ``every_frame`` asks for
    every decoded frame instead of the sampled ones (keyframes and about one a second).
    """

    @property
    def every_frame(self) -> bool: ...

    def add(self, timestamp: float, frame: Frame) -> None: ...

    def fork(self) -> FrameSink: ...

    def merge(self, later: FrameSink) -> None: ...


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a decode pass learnt about the video itself (the hashes live in the sinks)."""

    duration: float | None
    width: int | None
    height: int | None
    frames_decoded: int


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


def image_luma(image: Image.Image) -> Luma:
    """The luma plane PDQ works on: RGB-converted as the reference does (palette and alpha
    included), shrunk with ``Image.reduce`` when large. Pair it with the original size."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    factor = min(image.size) // REDUCE_MIN_SIDE
    if factor > 1:
        image = image.reduce(factor)
    return luma_of(image)


def luma_of(image: Image.Image) -> Luma:
    """Luma of an ``L`` or ``RGB`` Pillow image at its own size."""
    array = np.asarray(image)
    if array.ndim == 2:
        return array.astype(np.float32)
    return np.asarray(array[..., :3].astype(np.float32) @ _LUMA, dtype=np.float32)


class PillowFrame:
    """A ``Frame`` over a Pillow image (an animation's composited frame)."""

    def __init__(self, image: Image.Image) -> None:
        self._image = image
        self._luma: tuple[Luma, tuple[int, int]] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self._image.size

    def luma(self) -> tuple[Luma, tuple[int, int]]:
        if self._luma is None:
            self._luma = (image_luma(self._image), self._image.size)
        return self._luma

    def rgb(self, width: int, height: int) -> RGB:
        image = self._image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)


class AvFrame:
    """A ``Frame`` over a decoded ``av.VideoFrame``."""

    def __init__(self, frame: Any) -> None:
        self._frame = frame
        self._luma: tuple[Luma, tuple[int, int]] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return int(self._frame.width), int(self._frame.height)

    def luma(self) -> tuple[Luma, tuple[int, int]]:
        if self._luma is None:
            self._luma = (frame_luma(self._frame), self.size)
        return self._luma

    def rgb(self, width: int, height: int) -> RGB:
        scaled = self._frame.reformat(width=width, height=height, format="rgb24")
        out: RGB = scaled.to_ndarray()
        return out
