"""Videos the tests make themselves (PyAV encodes them), so a fresh clone tests video hashing
end to end without ``../shared/data``.

A video is a few "shots", each a slow pan across its own smooth random landscape (low-frequency
noise upscaled with Pillow, so perceptual hashes see structure, not noise), seeded so each
``seed`` is a different video. Copies are made the way re-uploads arise: re-encoded at another
quality, rescaled, turned grey, put in a WebM/VP9 container, letterboxed, mirrored.
"""

from __future__ import annotations

import contextlib
import fractions
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

Frame = npt.NDArray[np.uint8]
Transform = Callable[[Frame], Frame]


def shots(
    seed: int, *, width: int = 320, height: int = 240, seconds: float = 8.0, fps: int = 30
) -> Iterator[Frame]:
    """RGB frames: one 2-second shot after another, each panning over its own landscape."""
    rng = np.random.default_rng(seed)
    per_shot = 2 * fps
    total = round(seconds * fps)
    landscape: Frame | None = None
    for index in range(total):
        if index % per_shot == 0:
            small = rng.integers(0, 256, size=(9, 12, 3), dtype=np.uint8)
            big = Image.fromarray(small).resize((width * 2, height * 2), Image.Resampling.BICUBIC)
            landscape = np.asarray(big)
        assert landscape is not None
        t = (index % per_shot) / per_shot
        x = round(t * width * 0.8)
        y = round(t * height * 0.3)
        window = landscape[y : y + height * 3 // 2, x : x + width * 3 // 2]
        frame = Image.fromarray(np.ascontiguousarray(window)).resize(
            (width, height), Image.Resampling.BILINEAR
        )
        yield np.asarray(frame)


def encode(
    path: Path,
    frames: Iterator[Frame],
    *,
    fps: int = 30,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    transform: Transform | None = None,
) -> Path:
    """Encode ``frames`` (optionally transformed) into ``path``; the container follows the
    suffix. x264 defaults keep B-frames, so half the frames are non-reference ones."""
    encode_copies(frames, [Copy(path, codec, options, transform)], fps=fps)
    return path


class Copy(NamedTuple):
    path: Path
    codec: str = "libx264"
    options: dict[str, str] | None = None
    transform: Transform | None = None


def encode_copies(frames: Iterator[Frame], copies: list[Copy], *, fps: int = 30) -> None:
    """Encode several copies of the same frames at once (the source is decoded once)."""
    with contextlib.ExitStack() as stack:
        outputs = [stack.enter_context(av.open(str(copy.path), "w")) for copy in copies]
        streams = []
        for out, copy in zip(outputs, copies, strict=True):
            stream = out.add_stream(copy.codec, rate=fps)
            stream.pix_fmt = "yuv420p"
            default = {"crf": "20", "preset": "veryfast"}
            stream.options = copy.options if copy.options is not None else default
            stream.codec_context.time_base = fractions.Fraction(1, fps)
            streams.append(stream)
        for number, rgb in enumerate(frames):
            for out, copy, stream in zip(outputs, copies, streams, strict=True):
                picture = copy.transform(rgb) if copy.transform is not None else rgb
                if number == 0:
                    stream.width, stream.height = picture.shape[1], picture.shape[0]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                frame.pts = number
                for packet in stream.encode(frame):
                    out.mux(packet)
        for out, stream in zip(outputs, streams, strict=True):
            for packet in stream.encode():
                out.mux(packet)


def letterbox(rgb: Frame) -> Frame:
    """The picture squeezed into the middle 3/4 of the rows, black bars above and below."""
    height, width = rgb.shape[:2]
    inner = np.asarray(Image.fromarray(rgb).resize((width, height * 3 // 4)))
    out = np.zeros((height, width, 3), dtype=np.uint8)
    top = height // 8
    out[top : top + inner.shape[0]] = inner
    return out


def mirror(rgb: Frame) -> Frame:
    return np.ascontiguousarray(rgb[:, ::-1])


def grey(rgb: Frame) -> Frame:
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    return np.repeat(luma[:, :, None], 3, axis=2)


def rescale(width: int, height: int) -> Transform:
    def scaled(rgb: Frame) -> Frame:
        return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))

    return scaled
