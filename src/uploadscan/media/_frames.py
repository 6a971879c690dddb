"""Decoded pictures as the hashers see them: luma planes, and the frames of a decode pass.

PDQ only looks at luma (0.299 R + 0.587 G + 0.114 B). For 8-bit YUV video frames that is the
Y plane rescaled from video range, which saves the colour conversion the reference pipeline
pays for on every frame; for Pillow images it is the reference's RGB conversion, on a plane
reduced with ``Image.reduce`` when large (the hashers are told the original size).

``Frame`` is what the video decoder and the animation decoder hand to every hash type's
``FrameSink``: conversions are computed on demand, once per frame, whoever asks first. A
video hash that must pick frames the way a reference tool does (TMK replays ``ffmpeg -r 15``)
also needs each frame's time on ffmpeg's clock and facts about the stream (``FrameTiming``),
the small scaled pictures that tool hashes (``rgb``, ``gray``), and to hold on to a frame
after ``add`` returns (``keep``). A sink that can do without the pictures of frames nothing
refers to says so (``accepts_undecoded``): the decode pass may then skip decoding them and
only announce them (``add_undecoded``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

Luma = npt.NDArray[np.float32]
RGB = npt.NDArray[np.uint8]

#: Short side below which ``Image.reduce`` is not applied to decoded (non-draft) images.
REDUCE_MIN_SIDE = 512
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class Resample(Enum):
    """How ``Frame.rgb`` scales: swscale's (and ffmpeg's CLI's) default bicubic, or area
    averaging (half the cost of bicubic for a 720p frame to 64x64)."""

    BICUBIC = "bicubic"
    AREA = "area"


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """Facts about a video stream that ffmpeg's output frame-rate conversion depends on.

    ``frame_rate`` is the stream's guessed rate (it sets the duration of a frame whose packet
    has none); ``single_stream`` whether the container holds this stream alone (ffmpeg then
    does not pad a late start back to time 0); ``start_known`` whether the stream declares
    its start time.
    """

    frame_rate: float | None
    single_stream: bool
    start_known: bool


@dataclass(frozen=True, slots=True)
class FrameTiming:
    """When a frame is shown, as ffmpeg's CLI counts time.

    ``time`` is in seconds from the container's start (ffmpeg subtracts the earliest
    stream's start time), computed from the integer timestamps; the sinks' ``timestamp`` is
    counted from the video stream's first frame instead, so the two differ when, say, the
    audio starts first. ``duration`` comes from the packet (``None`` when unknown).
    """

    time: float
    duration: float | None
    stream: StreamTiming


#: Timing of the frames of an animated image, which is its only stream.
ANIMATION_STREAM = StreamTiming(frame_rate=None, single_stream=True, start_known=True)


class Frame(Protocol):
    """One decoded frame of a video or animation."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as decoded."""
        ...

    @property
    def timing(self) -> FrameTiming | None:
        """The frame's time on ffmpeg's clock (``None``: it has no timestamp, and ffmpeg
        drops such frames)."""
        ...

    def luma(self) -> tuple[Luma, tuple[int, int]]:
        """The luma plane, possibly reduced, and the (width, height) it stands for."""
        ...

    def rgb(self, width: int, height: int, resample: Resample = Resample.BICUBIC) -> RGB:
        """The frame as displayed (a rotation in the stream's display matrix applied),
        scaled to ``width`` x ``height`` without keeping its aspect ratio: (height, width,
        3) uint8 RGB."""
        ...

    def gray(self, width: int, height: int) -> npt.NDArray[np.uint8]:
        """The frame as displayed, area-averaged to ``width`` x ``height`` grey levels."""
        ...

    def keep(self) -> Frame:
        """This frame, still valid after ``add`` returns (the decoders reuse buffers; a sink
        that asks for a frame's pixels later keeps it this way)."""
        ...


class FrameSink(Protocol):
    """Receives the frames of one video decode pass.

    The decoder splits long videos into chunks decoded in parallel: each chunk gets a sink
    from ``fork()``, and the chunks are merged back in time order with ``merge``. A ``Frame``
    is only valid during ``add`` unless the sink calls its ``keep``. ``every_frame`` asks for
    every frame in presentation order instead of the sampled ones (keyframes and about one
    a second); the pass is then one sequential decode.

    ``accepts_undecoded`` (optional; a sink without it is taken to say ``False``): the sink
    does not need the pictures of frames no other frame refers to. When every sink that asks
    for every frame accepts that, the pass does not decode those frames (half of a typical
    H.264 file) and announces each with ``add_undecoded`` at its place in time instead.
    Sampled frames are always decoded ones.
    """

    @property
    def every_frame(self) -> bool: ...

    @property
    def accepts_undecoded(self) -> bool: ...

    def add(self, timestamp: float, frame: Frame) -> None: ...

    def add_undecoded(self, timestamp: float, timing: FrameTiming) -> None: ...

    def fork(self) -> FrameSink: ...

    def merge(self, later: FrameSink) -> None: ...


def accepts_undecoded(sink: FrameSink) -> bool:
    """``sink.accepts_undecoded``, ``False`` for sinks written before it existed."""
    return bool(getattr(sink, "accepts_undecoded", False))


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

    def __init__(self, image: Image.Image, timing: FrameTiming | None = None) -> None:
        self._image = image
        self._timing = timing
        self._luma: tuple[Luma, tuple[int, int]] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self._image.size

    @property
    def timing(self) -> FrameTiming | None:
        return self._timing

    def luma(self) -> tuple[Luma, tuple[int, int]]:
        if self._luma is None:
            self._luma = (image_luma(self._image), self._image.size)
        return self._luma

    def rgb(self, width: int, height: int, resample: Resample = Resample.BICUBIC) -> RGB:
        method = Image.Resampling.BOX if resample is Resample.AREA else Image.Resampling.BICUBIC
        image = self._image.convert("RGB").resize((width, height), method)
        return np.asarray(image, dtype=np.uint8)

    def gray(self, width: int, height: int) -> npt.NDArray[np.uint8]:
        image = self._image.convert("L").resize((width, height), Image.Resampling.BOX)
        return np.asarray(image, dtype=np.uint8)

    def keep(self) -> PillowFrame:
        # The animation decoder seeks the same Image object to the next frame.
        return PillowFrame(self._image.copy(), self._timing)


def display_turns(frame: Any) -> int:
    """Clockwise quarter turns that show a decoded ``av.VideoFrame`` upright.

    ffmpeg's CLI autorotates by the stream's display matrix before scaling, and the matrix
    angle is counter-clockwise: a ``rotate=90`` tag means three clockwise turns. Turning the
    scaled picture equals turning then scaling, up to rounding (the scaler is separable).
    """
    degrees = getattr(frame, "rotation", 0) or 0
    return round(-float(degrees) / 90.0) % 4


class AvFrame:
    """A ``Frame`` over a decoded ``av.VideoFrame``.

    The small conversions pass ``threads=1``: PyAV's default gives swscale a thread pool per
    call, which made a 64x64 conversion of a 720p frame 4.6 ms instead of 1.7 ms on two busy
    cores. PyAV allocates every decoded frame anew, so ``keep`` is the frame itself.
    """

    def __init__(self, frame: Any, timing: FrameTiming | None = None) -> None:
        self._frame = frame
        self._timing = timing
        self._luma: tuple[Luma, tuple[int, int]] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return int(self._frame.width), int(self._frame.height)

    @property
    def timing(self) -> FrameTiming | None:
        return self._timing

    def luma(self) -> tuple[Luma, tuple[int, int]]:
        if self._luma is None:
            self._luma = (frame_luma(self._frame), self.size)
        return self._luma

    def _scaled(self, width: int, height: int, pixel_format: str, method: str) -> Any:
        turns = display_turns(self._frame)
        if turns % 2:
            width, height = height, width
        scaled = self._frame.reformat(
            width=width, height=height, format=pixel_format, interpolation=method, threads=1
        )
        array = scaled.to_ndarray()
        return np.ascontiguousarray(np.rot90(array, k=-turns)) if turns else array

    def rgb(self, width: int, height: int, resample: Resample = Resample.BICUBIC) -> RGB:
        out: RGB = self._scaled(width, height, "rgb24", resample.name)
        return out

    def gray(self, width: int, height: int) -> npt.NDArray[np.uint8]:
        out: npt.NDArray[np.uint8] = self._scaled(width, height, "gray", "AREA")
        return out

    def keep(self) -> AvFrame:
        return self
