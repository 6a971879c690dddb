"""``hash_file``: every hash of one upload, without looking anything up.

The bytes are read once. MD5 and SHA-256 run on a worker thread while the image decodes
(both release the GIL), so on a large JPEG the digests cost almost nothing extra. PDQ of a
JPEG is computed from a reduced-size (draft) decode, which is most of the speed-up over
decoding every pixel; see ``_pdq`` for why that still matches the reference. Animated images
and videos go to the video hasher.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .. import hashtypes
from .._errors import ConfigError, UnsupportedMediaError
from ..media._borders import Luma, content_box, picture_box
from ..media._intake import (
    MediaInput,
    MediaKind,
    MediaSource,
    check_deadline,
    decode_errors,
    open_image,
    read_media,
)
from ..media._limits import DEFAULT_LIMITS, Limits
from ._pdq_algorithm import JPEG_DRAFT_MIN_SIDE, image_luma, pdq_variants_from_luma
from ._result import HashResult

if TYPE_CHECKING:
    from .._matching import QueryHash

_ALWAYS_COMPUTED = frozenset(("pdq", "md5", "sha256"))
_IMAGEHASH_FUNCTION = {"ahash": "average_hash"}  # the others are named like the hash type
#: Below this size the digests are computed inline: a thread hand-off would cost more.
_DIGEST_IN_THREAD_BYTES = 1 << 20

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _digest_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="uploadscan-digest"
            )
        return _executor


def _digests(data: bytes) -> tuple[str, str]:
    return hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest()


def _imagehash_functions(extra: Sequence[str]) -> dict[str, Callable[[Image.Image], object]]:
    """Validate ``extra`` up front, before any decoding, and map names to imagehash functions."""
    wanted: dict[str, Callable[[Image.Image], object]] = {}
    for name in extra:
        hashtypes.get(name)  # UnknownHashTypeError for names nobody registered
        if name in _ALWAYS_COMPUTED:
            continue
        if name not in hashtypes.IMAGEHASH_TYPES:
            raise ConfigError(
                f"hash type {name!r} is registered but hash_file cannot compute it; "
                f"extra accepts {', '.join(hashtypes.IMAGEHASH_TYPES)}"
            )
        import imagehash

        wanted[name] = getattr(imagehash, _IMAGEHASH_FUNCTION.get(name, name))
    return wanted


def hash_file(
    media: MediaSource,
    *,
    limits: Limits = DEFAULT_LIMITS,
    extra: Sequence[str] = (),
) -> HashResult:
    """MD5, SHA-256 and PDQ (plus any imagehash types named in ``extra``) of one upload.

    Raises a ``MediaError`` subclass for media that cannot be hashed within ``limits``.
    Videos and animated images get per-frame PDQ hashes in ``frames``; ``extra`` applies to
    still images only.
    """
    result, _, _ = _hash(media, limits=limits, extra=extra, need_pdq=True, dihedral=False)
    return result


@dataclass(frozen=True, slots=True)
class ScanHashes:
    """What ``Scanner.scan`` needs from hashing: the result and the queries to look up.

    ``queries`` holds the digests, the PDQ hash and (if asked) its 7 dihedral variants, or one
    query per video frame; ``frame_count`` is the number of hashed frames (0 for an image).
    """

    result: HashResult
    queries: list[QueryHash] = field(default_factory=list)
    frame_count: int = 0


def hash_for_scan(
    media: MediaSource,
    *,
    limits: Limits = DEFAULT_LIMITS,
    need_perceptual: bool = True,
    extra: Sequence[str] = (),
    dihedral: bool = True,
) -> ScanHashes:
    """Hash an upload for matching. Skips decoding entirely when no list needs a perceptual
    hash, and derives the dihedral PDQ variants from the same DCT (no re-decoding)."""
    from .._matching import QueryHash  # the matcher side; kept out of hash_file's import cost

    result, variants, frame_variants = _hash(
        media, limits=limits, extra=extra, need_pdq=need_perceptual, dihedral=dihedral
    )
    queries = [QueryHash("md5", result.md5), QueryHash("sha256", result.sha256)]
    for number, value in enumerate(variants):
        queries.append(QueryHash("pdq", value, variant=number, quality=result.pdq_quality))
    for index, frame in enumerate(result.frames):
        forms = frame_variants[index] if frame_variants else (frame.pdq,)
        for number, value in enumerate(forms):
            queries.append(
                QueryHash(
                    "pdq",
                    value,
                    variant=number,
                    quality=frame.quality,
                    frame=index,
                    timestamp=frame.timestamp,
                )
            )
    for name, value in result.extra.items():
        queries.append(QueryHash(name, value))
    return ScanHashes(result, queries, len(result.frames))


def _hash(
    media: MediaSource,
    *,
    limits: Limits,
    extra: Sequence[str],
    need_pdq: bool,
    dihedral: bool,
) -> tuple[HashResult, tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The hashes, the image's PDQ variants (original first), and each video frame's."""
    if isinstance(extra, str):
        raise ConfigError("extra must be a sequence of hash-type names, not a single string")
    functions = _imagehash_functions(extra)
    started = time.monotonic()
    item = read_media(media, limits)
    digest_future: Future[tuple[str, str]] | None = None
    if item.size >= _DIGEST_IN_THREAD_BYTES:
        digest_future = _digest_executor().submit(_digests, item.data)
    try:
        if not need_pdq and not functions:
            md5, sha256 = _finish_digests(item, digest_future)
            return HashResult(item.media_type, md5, sha256, item.size), (), ()
        if item.kind is MediaKind.VIDEO:
            return _hash_video(item, limits, digest_future, dihedral)
        result, variants = _hash_image(
            item, limits, functions, started, digest_future, need_pdq, dihedral
        )
        return result, variants, ()
    finally:
        if digest_future is not None:
            digest_future.cancel()


def _finish_digests(item: MediaInput, future: Future[tuple[str, str]] | None) -> tuple[str, str]:
    return future.result() if future is not None else _digests(item.data)


def _hash_video(
    item: MediaInput,
    limits: Limits,
    digest_future: Future[tuple[str, str]] | None,
    dihedral: bool = False,
) -> tuple[HashResult, tuple[str, ...], tuple[tuple[str, ...], ...]]:
    try:
        from ..media._video import hash_video  # imported lazily: PyAV is only loaded for videos
    except ImportError as exc:
        raise UnsupportedMediaError(
            f"{item.media_type}: video hashing is unavailable ({exc})", media_type=item.media_type
        ) from exc

    video = hash_video(item.data, item.media_type, limits, dihedral=dihedral)
    md5, sha256 = _finish_digests(item, digest_future)
    result = HashResult(
        media_type=item.media_type,
        md5=md5,
        sha256=sha256,
        size=item.size,
        width=video.width,
        height=video.height,
        frames=tuple(video.frames),
        duration=video.duration,
    )
    return result, (), tuple(video.variants)


def _hash_image(
    item: MediaInput,
    limits: Limits,
    functions: dict[str, Callable[[Image.Image], object]],
    started: float,
    digest_future: Future[tuple[str, str]] | None,
    need_pdq: bool,
    dihedral: bool,
) -> tuple[HashResult, tuple[str, ...]]:
    media_type = item.media_type
    image = open_image(item.data, media_type, limits)
    original_size = image.size
    extra: dict[str, str] = {}
    variants: tuple[str, ...] = ()
    quality: int | None = None
    with decode_errors(media_type):
        if image.format == "JPEG" and not functions:
            _draft(image)
        image.load()
        check_deadline(started, limits, media_type, "decoding")
        if need_pdq:
            luma = image_luma(image)
            variants, quality = pdq_variants_from_luma(luma, original_size, dihedral=dihedral)
            if dihedral:
                variants += _trimmed_variants(luma, original_size)
        for name, function in functions.items():
            extra[name] = str(function(image))
        check_deadline(started, limits, media_type, "hashing")
    md5, sha256 = _finish_digests(item, digest_future)
    result = HashResult(
        media_type=media_type,
        md5=md5,
        sha256=sha256,
        size=item.size,
        pdq=variants[0] if variants else None,
        pdq_quality=quality,
        width=original_size[0],
        height=original_size[1],
        extra=extra,
    )
    return result, variants


def _trimmed_variants(luma: Luma, original_size: tuple[int, int]) -> tuple[str, ...]:
    """PDQ variants of the picture inside uniform borders, and of the picture on a flat
    background with interface marks around it (a screenshot), where either is found.

    A letterboxed, padded or screenshot copy of a listed image only matches once the
    surroundings are gone; the trimmed hashes are extra queries, never the image's reported
    PDQ.
    """
    boxes = {box for box in (content_box(luma), picture_box(luma)) if box is not None}
    scale_x = original_size[0] / luma.shape[1]
    scale_y = original_size[1] / luma.shape[0]
    variants: tuple[str, ...] = ()
    for top, bottom, left, right in sorted(boxes):
        size = (round((right - left) * scale_x), round((bottom - top) * scale_y))
        cropped = np.ascontiguousarray(luma[top:bottom, left:right])
        variants += pdq_variants_from_luma(cropped, size, dihedral=True)[0]
    return variants


def _draft(image: Image.Image) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the short side stays >= 256 px.

    Colour JPEGs decode their luma channel only: PDQ's luma weights are JPEG's own Y weights.
    """
    width, height = image.size
    for scale in (8, 4, 2):
        if min(width, height) // scale >= JPEG_DRAFT_MIN_SIDE:
            mode = "L" if image.mode == "RGB" else image.mode
            image.draft(mode, (width // scale, height // scale))
            return
