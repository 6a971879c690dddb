"""Opening still images safely: one decoder per sniffed type, pixel limits before decoding.

Pillow is only allowed the decoder the sniffed type implies (a file that sniffs as PNG is
never handed to, say, the PSD or EPS plug-in), the pixel count is checked from the header
before any pixel is decoded, and everything Pillow raises on malformed data leaves as a typed
``MediaError``.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, features

from .._errors import (
    CorruptMediaError,
    MediaError,
    MediaTooLargeError,
    UnsupportedMediaError,
)
from ._frames import Luma, image_luma
from ._limits import Limits

_HEIF_HINT = "install the optional HEIF/AVIF support: pip install uploadscan[heif]"

_PILLOW_FORMAT = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
    "image/avif": "AVIF",
    "image/heic": "HEIF",
}

#: What Pillow raises on malformed input, besides its own DecompressionBombError.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    zlib.error,
    Warning,  # only when the caller's warning filters turn warnings into errors
)


@contextmanager
def decode_errors(media_type: str) -> Iterator[None]:
    """Turn anything Pillow raises while parsing or decoding into a typed ``MediaError``.

    DecompressionBombWarning is silenced (the pixel limit is enforced by ``open_image`` against
    ``Limits.max_pixels`` instead). ``catch_warnings`` swaps process-wide state, so under
    concurrent use another thread may briefly see the warning; never the other way round.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise MediaTooLargeError(
            f"{media_type} has too many pixels: {exc}", media_type=media_type, limit="max_pixels"
        ) from exc
    except MemoryError as exc:
        raise MediaTooLargeError(
            f"out of memory decoding {media_type}", media_type=media_type, limit="max_pixels"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise CorruptMediaError(
            f"cannot decode {media_type}: {type(exc).__name__}: {exc}", media_type=media_type
        ) from exc


def _ensure_plugin(media_type: str) -> None:
    """Make the decoder for HEIC/AVIF available, or say which extra provides it."""
    if media_type == "image/avif" and features.check("avif"):
        return
    if media_type not in ("image/heic", "image/avif"):
        return
    try:
        import pillow_heif
    except ImportError:
        raise UnsupportedMediaError(
            f"{media_type} needs a plug-in that is not installed; {_HEIF_HINT}",
            media_type=media_type,
            extra="heif",
        ) from None
    if media_type == "image/avif":
        register_avif = getattr(pillow_heif, "register_avif_opener", None)
        if register_avif is None:
            raise UnsupportedMediaError(
                "image/avif: this Pillow has no AVIF codec and pillow-heif no longer decodes "
                "AVIF; upgrade Pillow (>= 11.2 ships AVIF)",
                media_type=media_type,
                extra="heif",
            )
        register_avif()
    else:
        pillow_heif.register_heif_opener()


def pillow_format(media_type: str) -> str:
    try:
        return _PILLOW_FORMAT[media_type]
    except KeyError:
        raise UnsupportedMediaError(
            f"{media_type} is not a still-image type", media_type=media_type
        ) from None


def open_image(data: bytes, media_type: str, limits: Limits) -> Image.Image:
    """Open (not decode) an image with only the decoder its sniffed type allows.

    The pixel count from the header is checked against ``limits.max_pixels`` before anything is
    decoded, so a few-KB file claiming 50000 x 50000 pixels costs nothing.
    """
    fmt = pillow_format(media_type)
    _ensure_plugin(media_type)
    formats = ["AVIF", "HEIF"] if fmt in ("AVIF", "HEIF") else [fmt]
    with decode_errors(media_type):
        image = Image.open(io.BytesIO(data), formats=formats)
    check_pixels(image.size, media_type, limits)
    return image


#: Longest side we hash, whatever ``max_pixels`` allows. PDQ's filter is one dense 64 x n
#: operator per axis, so a 2,000,000 x 5 PNG (10 MP, 39 KB) cost 6 GB and 20 s before this
#: cap; at 65535 (JPEG's and GIF's own maximum) it is tens of MB.
MAX_SIDE = 65_535


def check_pixels(size: tuple[int, int], media_type: str, limits: Limits) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptMediaError(
            f"{media_type} declares a {width}x{height} image", media_type=media_type
        )
    if max(width, height) > MAX_SIDE:
        raise MediaTooLargeError(
            f"{media_type} is {width}x{height}: a side longer than {MAX_SIDE} pixels",
            media_type=media_type,
            limit="max_pixels",
        )
    if width * height > limits.max_pixels:
        raise MediaTooLargeError(
            f"{media_type} is {width}x{height} = {width * height} pixels, "
            f"over max_pixels={limits.max_pixels}",
            media_type=media_type,
            limit="max_pixels",
        )


def check_deadline(started: float, limits: Limits, media_type: str, stage: str) -> None:
    """Raise if decoding has used more than ``limits.max_decode_seconds`` of wall time."""
    elapsed = time.monotonic() - started
    if elapsed > limits.max_decode_seconds:
        raise MediaTooLargeError(
            f"{media_type}: {stage} took {elapsed:.1f} s, over "
            f"max_decode_seconds={limits.max_decode_seconds}",
            media_type=media_type,
            limit="max_decode_seconds",
        )


#: Short side (in reduced pixels) below which a JPEG's draft (reduced-size) decode stops
#: shrinking: PDQ of a 256 px draft stays within a few bits of the full decode's.
JPEG_DRAFT_MIN_SIDE = 256


class DecodedImage:
    """One still image, decoded once for every hash type that reads images.

    ``image`` is the decoded Pillow image: a JPEG is draft-decoded at 1/2, 1/4 or 1/8 scale
    (short side still >= ``JPEG_DRAFT_MIN_SIDE``) unless some type asked for full resolution;
    ``original_size`` is the (width, height) the file declares, which hashers computing from a
    reduced decode need. ``luma()`` is computed on first use and shared.
    """

    def __init__(self, image: Image.Image, original_size: tuple[int, int], media_type: str):
        self.image = image
        self.original_size = original_size
        self.media_type = media_type
        self._luma: Luma | None = None

    def luma(self) -> Luma:
        """The luma plane hashers share (reduced when large; pair it with ``original_size``)."""
        if self._luma is None:
            self._luma = image_luma(self.image)
        return self._luma


def decode_image(
    data: bytes,
    media_type: str,
    limits: Limits,
    *,
    full_resolution: bool,
    started: float,
    min_long_side: int = 0,
) -> DecodedImage:
    """Decode a still image within ``limits`` (pixels checked from the header first, and the
    wall-clock budget after decoding), reduced when no hasher needs full resolution (and
    never below ``min_long_side`` on the long side)."""
    image = open_image(data, media_type, limits)
    original_size = image.size
    with decode_errors(media_type):
        if image.format == "JPEG" and not full_resolution:
            _draft(image, min_long_side)
        image.load()
    check_deadline(started, limits, media_type, "decoding")
    return DecodedImage(image, original_size, media_type)


def _draft(image: Image.Image, min_long_side: int = 0) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the short side stays >= 256 px (and
    the long side >= ``min_long_side``).

    Colour JPEGs decode their luma channel only: PDQ's luma weights are JPEG's own Y weights.
    """
    width, height = image.size
    for scale in (8, 4, 2):
        if (
            min(width, height) // scale >= JPEG_DRAFT_MIN_SIDE
            and max(width, height) // scale >= min_long_side
        ):
            mode = "L" if image.mode == "RGB" else image.mode
            image.draft(mode, (width // scale, height // scale))
            return
