"""Resource limits for decoding untrusted uploads.

Upload handlers receive whatever the internet sends; every decode is bounded so that a crafted
file costs at most a known amount of memory and time. Defaults suit a typical social platform;
override per ``Scanner`` or per call.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import ConfigError


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds applied to one upload.

    ``max_bytes``: size of the encoded upload. ``max_pixels``: width x height of a decoded image
    or video frame (Pillow's own bomb check is aligned to it). ``max_frames``: frames decoded from
    a video or animation. ``max_duration_seconds``: declared media duration we are willing to read.
    ``max_decode_seconds``: wall-clock budget for decoding one upload.
    """

    max_bytes: int = 512 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_frames: int = 10_000
    max_duration_seconds: float = 4 * 3600.0
    max_decode_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"Limits.{name} must be a positive integer, got {value!r}")
        for name in ("max_duration_seconds", "max_decode_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"Limits.{name} must be a positive number, got {value!r}")


DEFAULT_LIMITS = Limits()
