"""Animated GIF, WebP and PNG: hash the frame on screen at each tick, like a video's.

Sinks that take every frame (TMK) get every composited frame with its display time and
delay, as a video's frames come with their timestamps and durations.

Pillow composites animation frames the way browsers show them (disposal, blending, partial
frames), which FFmpeg's decoders only partly do, so animations are decoded here rather than with
PyAV. Compositing needs every frame decoded, so ``max_frames`` bounds the frame count up front.

Compositing also keeps several full-canvas buffers (the canvas, the previous frame for
disposal, an RGBA conversion), about four times what one still image of the same size needs,
and a GIF of under 100 bytes can declare a 10000 x 10000 canvas. So an animation's canvas is
held to ``max_pixels / ANIMATION_PIXEL_DIVISOR``, which keeps its memory in line with a still
image at ``max_pixels`` (measured: two 1x1 frames on a 100 MP canvas peaked at 1.9 GB).
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from .._errors import MediaTooLargeError
from ._frames import ANIMATION_STREAM, FrameSink, FrameTiming, PillowFrame, VideoInfo
from ._image import check_deadline, check_pixels, decode_errors, open_image
from ._limits import Limits

#: An animation's canvas may have at most ``max_pixels // ANIMATION_PIXEL_DIVISOR`` pixels.
ANIMATION_PIXEL_DIVISOR = 4
_MIN_GIF_DELAY = 0.02  # browsers show shorter GIF delays as 0.1 s
_DEFAULT_GIF_DELAY = 0.1


def decode_animation(
    data: bytes,
    media_type: str,
    limits: Limits,
    sinks: Sequence[FrameSink],
    interval: float,
    started: float,
) -> VideoInfo:
    """Hand the frame on screen at each ``interval`` tick (and the first frame) to ``sinks``."""
    image = open_image(data, media_type, limits)
    _check_canvas(image.size, media_type, limits)
    decoded = 0
    now = 0.0
    with decode_errors(media_type):
        count = int(getattr(image, "n_frames", 1))
        if count > limits.max_frames:
            raise MediaTooLargeError(
                f"{media_type}: {count} frames, over max_frames={limits.max_frames}",
                media_type=media_type,
                limit="max_frames",
            )
        next_tick = 0.0
        for index in range(count):
            image.seek(index)
            decoded += 1
            check_deadline(started, limits, media_type, "animation decoding")
            check_pixels(image.size, media_type, limits)
            delay = _frame_delay(image, media_type)
            sampled = now + delay > next_tick or index == 0
            takers = [s for s in sinks if sampled or s.every_frame]
            if takers:
                # The frame's luma is reduced as a still image's is (a 1 KB GIF can declare a
                # 100 MP canvas): full-resolution float luma of every frame would cost GBs.
                frame = PillowFrame(image, FrameTiming(now, delay, ANIMATION_STREAM))
                for sink in takers:
                    sink.add(round(now, 6), frame)
                check_deadline(started, limits, media_type, "animation hashing")
            if sampled:
                while next_tick < now + delay:
                    next_tick += interval
            now += delay
            if now > limits.max_duration_seconds:
                raise MediaTooLargeError(
                    f"{media_type}: runs for over max_duration_seconds="
                    f"{limits.max_duration_seconds}",
                    media_type=media_type,
                    limit="max_duration_seconds",
                )
    return VideoInfo(
        duration=now, width=image.size[0], height=image.size[1], frames_decoded=decoded
    )


def _check_canvas(size: tuple[int, int], media_type: str, limits: Limits) -> None:
    width, height = size
    allowed = limits.max_pixels // ANIMATION_PIXEL_DIVISOR
    if width * height > allowed:
        raise MediaTooLargeError(
            f"animated {media_type} has a {width}x{height} = {width * height} pixel canvas, "
            f"over max_pixels/{ANIMATION_PIXEL_DIVISOR}={allowed} for animations",
            media_type=media_type,
            limit="max_pixels",
        )


def _frame_delay(image: Image.Image, media_type: str) -> float:
    """Seconds the current frame is shown (browsers' rule for tiny GIF delays)."""
    raw = image.info.get("duration")
    seconds = float(raw) / 1000.0 if isinstance(raw, int | float) and raw > 0 else 0.0
    if media_type == "image/gif" and seconds < _MIN_GIF_DELAY:
        return _DEFAULT_GIF_DELAY
    return seconds if seconds > 0 else _DEFAULT_GIF_DELAY
