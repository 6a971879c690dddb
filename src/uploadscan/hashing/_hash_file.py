"""Hashing one upload: one read, at most one decode, every hash type that is asked for.

The order is what makes exact lists trustworthy: the bytes are read once, within
``max_bytes``, and every byte-level type (MD5, SHA-256) digests them as they arrive, before
and independent of any decoding. Only then is the type sniffed and, when some asked-for type
computes from pictures, the upload decoded once: a still image for every ``hash_image``, or
one video decode pass feeding every ``video_sink``. A decode failure is reported next to the
digests, never instead of them, so a corrupt or truncated copy of a listed file still meets
the digest lists; bytes that are not media at all (a PDF, a ZIP) are not a failure.

Nothing here knows a hash type by name: what is computed is what the types' protocol
(``_protocol.HashType``) says they compute from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .._errors import ConfigError, MediaError, MediaTooLargeError, UnsupportedMediaError
from ..media._frames import VideoInfo
from ..media._image import decode_image
from ..media._intake import (
    DigestFeed,
    MediaKind,
    MediaSource,
    classify,
    other_type,
    read_upload,
    sniff,
)
from ..media._limits import DEFAULT_LIMITS, Limits
from ._protocol import HashType, VideoHash
from ._registry import registry
from ._result import FrameHash, HashResult, Query, frames_as_queries, image_queries

__all__ = ["UploadHashes", "computable", "hash_file", "hash_upload", "types_for"]


def _overrides(hash_type: HashType, method: str) -> bool:
    return getattr(type(hash_type), method) is not getattr(HashType, method)


def reads_bytes(hash_type: HashType) -> bool:
    return _overrides(hash_type, "byte_digest")


def reads_images(hash_type: HashType) -> bool:
    return _overrides(hash_type, "hash_image")


def reads_frames(hash_type: HashType) -> bool:
    return _overrides(hash_type, "video_sink")


def computable(hash_type: HashType) -> bool:
    """Whether any upload can produce values of this type (a type may exist only to be
    matched from precomputed hashes)."""
    return reads_bytes(hash_type) or reads_images(hash_type) or reads_frames(hash_type)


def types_for(names: Iterable[str], *, defaults: bool = True) -> list[HashType]:
    """The computable types to hash with: the default ones and those named.

    ``UnknownHashTypeError`` for a name nobody registered, ``ConfigError`` for a type that
    cannot be computed from media; both before anything is read.
    """
    if isinstance(names, str):
        raise ConfigError("extra must be a sequence of hash-type names, not a single string")
    chosen: dict[str, HashType] = {}
    if defaults:
        chosen = {t.name: t for t in registry if t.computed_by_default and computable(t)}
    for name in names:
        hash_type = registry.get(name)
        if not computable(hash_type):
            can = ", ".join(t.name for t in registry if computable(t))
            raise ConfigError(
                f"hash type {name!r} is registered but is not computed from media; "
                f"computable types: {can}"
            )
        chosen[hash_type.name] = hash_type
    return list(chosen.values())


def hash_file(
    media: MediaSource,
    *,
    limits: Limits = DEFAULT_LIMITS,
    extra: Sequence[str] = (),
) -> HashResult:
    """MD5 and SHA-256 of any file, and the perceptual hashes of images and videos (PDQ, a
    video's frames; any other registered type named in ``extra``).

    Raises a ``MediaError`` subclass for media that cannot be hashed within ``limits``;
    bytes that are not media at all get their digests and no perceptual hash.
    """
    hashed = hash_upload(media, limits=limits, types=types_for(extra), variants=False)
    if hashed.error is not None:
        raise hashed.error
    return hashed.result


@dataclass(frozen=True, slots=True)
class UploadHashes:
    """One upload hashed for matching.

    ``queries`` hold the digests and every perceptual query (extra forms included); ``error``
    is set when the upload is media that could not be decoded or hashed within limits — the
    digests in ``result`` and ``queries`` are there all the same.
    """

    result: HashResult
    queries: tuple[Query, ...]
    kind: MediaKind
    error: MediaError | None = None

    @property
    def is_media(self) -> bool:
        return self.kind is not MediaKind.OTHER


def hash_upload(
    media: MediaSource,
    *,
    limits: Limits = DEFAULT_LIMITS,
    types: Sequence[HashType],
    variants: bool = True,
    decided: Callable[[Sequence[Query]], bool] | None = None,
) -> UploadHashes:
    """Hash ``media`` with ``types`` (see the module docstring for the order).

    ``variants`` adds each perceptual hash's extra query forms (rotations, mirrors, trimmed
    borders). ``UploadReadError`` is raised when a path cannot be read; an upload over
    ``max_bytes`` comes back with its ``MediaTooLargeError`` and no hash at all.

    ``decided`` makes the costly types (``HashType.second_stage``) a second stage: it is called
    with the queries of the digests and the other image types, and when it answers True (the
    upload is blocked already) the costly types are not computed.
    """
    started = time.monotonic()
    feed = DigestFeed({t.name: t.byte_digest for t in types if reads_bytes(t)})  # type: ignore[misc]
    try:
        data = read_upload(media, limits, feed)
    except MediaTooLargeError as exc:
        # Over max_bytes: nothing was hashed, not even the digests (they would need every
        # byte); the verdict takes the fail mode.
        empty = HashResult(media_type="application/octet-stream", size=0)
        return UploadHashes(empty, (), MediaKind.OTHER, exc)
    image_types = sorted((t for t in types if reads_images(t)), key=lambda t: t.second_stage)
    frame_types = [t for t in types if reads_frames(t)]
    values: dict[str, str] = {}
    qualities: dict[str, int] = {}
    queries: list[Query] = []
    frames: tuple[FrameHash, ...] = ()
    size: tuple[int | None, int | None] = (None, None)
    duration: float | None = None
    error: MediaError | None = None
    try:
        if image_types or frame_types:
            media_type, kind = classify(data, limits)
        else:
            media_type, kind = _sniffed_only(data)
        if kind is MediaKind.IMAGE and image_types:
            image = decode_image(
                data,
                media_type,
                limits,
                full_resolution=any(t.needs_full_image for t in image_types),
                started=started,
                min_long_side=max(t.min_decode_side for t in image_types),
            )
            size = image.original_size
            for hash_type in image_types:
                if hash_type.second_stage and decided is not None:
                    first = [Query(name, value) for name, value in feed.result().items()]
                    if decided(first + queries):
                        break  # the second-stage types are sorted last
                    decided = None  # asked once per upload
                computed = hash_type.hash_image(image, variants=variants)
                if computed is None:
                    continue
                values[hash_type.name] = computed.value
                if computed.quality is not None:
                    qualities[hash_type.name] = computed.quality
                queries += image_queries(
                    hash_type.name, computed.value, computed.quality, computed.variants
                )
        elif kind is MediaKind.VIDEO and frame_types:
            videos, info = _hash_video(data, media_type, limits, frame_types, variants, started)
            size, duration = (info.width, info.height), info.duration
            for hash_type, video in videos:
                if video.value is not None:
                    values[hash_type.name] = video.value
                    queries += image_queries(hash_type.name, video.value, None, video.variants)
                if video.frames:
                    frames = video.frames
                    queries += frames_as_queries(hash_type.name, video.frames, video.frame_variants)
    except MediaError as exc:
        error = exc
        media_type = exc.media_type or _sniffed_only(data)[0]
        kind = MediaKind.IMAGE if media_type.startswith("image/") else MediaKind.VIDEO
    digests = feed.result()
    result = HashResult(
        media_type=media_type,
        size=len(data),
        values={**digests, **values},
        qualities=qualities,
        width=size[0],
        height=size[1],
        frames=frames,
        duration=duration,
        is_media=kind is not MediaKind.OTHER,
    )
    digest_queries = [Query(name, value) for name, value in digests.items()]
    return UploadHashes(result, tuple(digest_queries + queries), kind, error)


def _sniffed_only(data: bytes) -> tuple[str, MediaKind]:
    """The media type without opening anything (no perceptual type is wanted)."""
    try:
        media_type = sniff(data)
    except MediaError as exc:
        return exc.media_type or "application/octet-stream", MediaKind.IMAGE
    if media_type is None:
        return other_type(data), MediaKind.OTHER
    kind = MediaKind.VIDEO if media_type.startswith("video/") else MediaKind.IMAGE
    return media_type, kind


def _hash_video(
    data: bytes,
    media_type: str,
    limits: Limits,
    frame_types: Sequence[HashType],
    variants: bool,
    started: float,
) -> tuple[list[tuple[HashType, VideoHash]], VideoInfo]:
    try:
        from ..media._video import decode_video  # PyAV is only loaded for videos
    except ImportError as exc:
        raise UnsupportedMediaError(
            f"{media_type}: video decoding is unavailable ({exc})", media_type=media_type
        ) from exc
    sinks = [(t, t.video_sink(variants=variants)) for t in frame_types]
    active = [(t, s) for t, s in sinks if s is not None]
    info = decode_video(data, media_type, limits, [s for _, s in active], started=started)
    return [(t, s.finish()) for t, s in active], info
