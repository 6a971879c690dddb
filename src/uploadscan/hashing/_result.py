"""What hashing one upload produces, independent of any hash list.

A ``HashResult`` is the unit that crosses module boundaries: media intake and the hashers fill it,
the matcher reads it, ``uploadscan hash`` prints it, and split hasher/matcher deployments send
its ``to_dict()`` over the wire. It never holds the content itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class FrameHash:
    """PDQ hash of one video frame; ``timestamp`` is seconds from the start of the stream."""

    timestamp: float
    pdq: str
    quality: int

    def to_dict(self) -> dict[str, Any]:
        return {"timestamp": round(self.timestamp, 6), "pdq": self.pdq, "quality": self.quality}


@dataclass(frozen=True, slots=True)
class HashResult:
    """All hashes of one upload.

    ``pdq`` is 64 lowercase hex characters, or ``None`` when the media has no single image
    (a video) or could not be hashed perceptually. ``extra`` holds optional hash types asked for
    by name (``{"phash": "ba8c84536bd3c366"}``). ``frames`` is empty for still images.
    """

    media_type: str
    md5: str
    sha256: str
    size: int
    pdq: str | None = None
    pdq_quality: int | None = None
    width: int | None = None
    height: int | None = None
    frames: tuple[FrameHash, ...] = ()
    duration: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_video(self) -> bool:
        return self.media_type.startswith("video/") or bool(self.frames)

    def hashes(self) -> dict[str, list[str]]:
        """Hash-type name to values, the shape ``Scanner.lookup`` takes."""
        out: dict[str, list[str]] = {"md5": [self.md5], "sha256": [self.sha256]}
        pdqs = [self.pdq] if self.pdq is not None else []
        pdqs.extend(f.pdq for f in self.frames)
        if pdqs:
            out["pdq"] = pdqs
        for name, value in self.extra.items():
            out.setdefault(name, []).append(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out: dict[str, Any] = {
            "media_type": self.media_type,
            "size": self.size,
            "md5": self.md5,
            "sha256": self.sha256,
            "pdq": self.pdq,
            "pdq_quality": self.pdq_quality,
        }
        if self.width is not None:
            out["width"] = self.width
            out["height"] = self.height
        if self.frames or self.duration is not None:
            out["duration"] = self.duration
            out["frames"] = [f.to_dict() for f in self.frames]
        out.update(self.extra)
        return out
