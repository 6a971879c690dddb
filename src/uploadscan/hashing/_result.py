"""What hashing one upload produces, independent of any hash list.

A ``HashResult`` is the unit that crosses module boundaries: the hashers fill it, the matcher
reads it, ``uploadscan hash`` prints it, and split hasher/matcher deployments send its
``to_dict()`` over the wire. It never holds the content itself. Its fields are generic (values
by hash-type name); the properties named after the built-in types (``pdq``, ``md5``...) are
the public API's view of them.

A ``Query`` is one value to look up: the upload's hash, one of its extra forms (rotations,
mirrors, trimmed borders), or one video frame's hash.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Hash types whose values ``HashResult`` exposes under a property of their own name; the
#: other computed values are the ``extra`` ones (asked for by name, or a plug-in's).
_NAMED = ("md5", "sha256", "pdq", "tmk")


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

    ``values`` maps hash-type name to the one value computed for the upload as a whole (an
    image's PDQ, the digests, a video's TMK); ``qualities`` the quality of those that have one.
    ``frames`` are a video's per-frame PDQ hashes (empty for still images and non-media).
    ``media_type`` is the sniffed type (``application/octet-stream`` and the like for bytes
    that are not media).
    """

    media_type: str
    size: int
    values: Mapping[str, str] = field(default_factory=dict)
    qualities: Mapping[str, int] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    frames: tuple[FrameHash, ...] = ()
    duration: float | None = None
    is_media: bool = True

    @property
    def md5(self) -> str:
        return self.values["md5"]

    @property
    def sha256(self) -> str:
        return self.values["sha256"]

    @property
    def pdq(self) -> str | None:
        """64 lowercase hex characters, or ``None`` when the media has no single image (a
        video, a non-media file) or could not be hashed perceptually."""
        return self.values.get("pdq")

    @property
    def pdq_quality(self) -> int | None:
        return self.qualities.get("pdq")

    @property
    def tmk(self) -> bytes | None:
        """A video's TMK+PDQF hash as the bytes of a reference-layout ``.tmk`` file."""
        value = self.values.get("tmk")
        if value is None:
            return None
        head, _, rest = value.partition("|")
        return head.encode("ascii") + base64.b64decode(rest)

    @property
    def extra(self) -> dict[str, str]:
        """Values of the types asked for by name (``hash_file(..., extra=["phash"])``)."""
        return {k: v for k, v in self.values.items() if k not in _NAMED}

    @property
    def is_video(self) -> bool:
        return self.media_type.startswith("video/") or bool(self.frames)

    def digest(self, name: str) -> str | None:
        """A digest by hash-type name, ``None`` when it was not computed (an upload over
        ``max_bytes`` is not read, so not digested)."""
        return self.values.get(name)

    def hashes(self) -> dict[str, list[str]]:
        """Hash-type name to values, the shape ``Scanner.lookup`` takes."""
        out: dict[str, list[str]] = {name: [value] for name, value in self.values.items()}
        if self.frames:
            out.setdefault("pdq", []).extend(f.pdq for f in self.frames)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out: dict[str, Any] = {
            "media_type": self.media_type,
            "size": self.size,
            "md5": self.values.get("md5"),
            "sha256": self.values.get("sha256"),
            "pdq": self.pdq,
            "pdq_quality": self.pdq_quality,
        }
        if self.width is not None:
            out["width"] = self.width
            out["height"] = self.height
        if self.frames or self.duration is not None:
            out["duration"] = self.duration
            out["frames"] = [f.to_dict() for f in self.frames]
        if "tmk" in self.values:
            out["tmk"] = self.values["tmk"]
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Query:
    """One hash to look up. ``variant`` 0 is the hash as computed, others its extra forms;
    ``frame`` is the index of the video frame it came from (``None`` for a whole upload)."""

    hash_type: str
    value: str
    variant: int = 0
    quality: int | None = None
    frame: int | None = None
    timestamp: float | None = None


def frames_as_queries(
    hash_type: str, frames: Sequence[FrameHash], variants: Sequence[Sequence[str]] = ()
) -> list[Query]:
    """One query per frame (and per extra form of a frame, when ``variants`` are given)."""
    out = []
    for index, frame in enumerate(frames):
        forms = variants[index] if variants else (frame.pdq,)
        for number, value in enumerate(forms):
            out.append(
                Query(
                    hash_type,
                    value,
                    variant=number,
                    quality=frame.quality,
                    frame=index,
                    timestamp=frame.timestamp,
                )
            )
    return out


def image_queries(
    hash_type: str, value: str, quality: int | None, variants: Sequence[str]
) -> list[Query]:
    """The queries of one whole-upload value (an image's PDQ, a video's TMK): the value,
    then its extra forms in order."""
    forms = [value, *variants]
    return [Query(hash_type, v, variant=i, quality=quality) for i, v in enumerate(forms)]


def by_name(values: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in values.items()}
