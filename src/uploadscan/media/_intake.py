"""Media intake: read an upload within limits, name its type from magic bytes, open it safely.

Everything here treats the upload as hostile. The type comes from the first bytes only (a name
or a Content-Type header is whatever the uploader wanted it to be), Pillow is only allowed to
use the one decoder that type implies, the pixel count is checked from the header before any
pixel is decoded, and every failure leaves as a typed ``MediaError``.
"""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO

from PIL import Image, features

from .._errors import (
    ConfigError,
    CorruptMediaError,
    MediaError,
    MediaTooLargeError,
    UnsupportedMediaError,
)
from ._limits import Limits

#: What every entry point accepts as an upload.
MediaSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO

_CHUNK = 1 << 20
_HEIF_HINT = "install the optional HEIF/AVIF support: pip install uploadscan[heif]"


class MediaKind(Enum):
    """How an upload is hashed: as one still image, or frame by frame."""

    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class MediaInput:
    """The bytes of one upload with the type sniffed from them.

    Animated GIF, WebP and PNG have an image ``media_type`` but ``kind`` VIDEO, so their frames
    are hashed like a video's.
    """

    data: bytes
    media_type: str
    kind: MediaKind

    @property
    def size(self) -> int:
        return len(self.data)


# ----------------------------------------------------------------------------- reading


def read_media(media: MediaSource, limits: Limits) -> MediaInput:
    """Read an upload (bytes, a path, or a binary file object) and classify it."""
    data = read_bytes(media, limits.max_bytes)
    media_type = sniff(data)
    return MediaInput(data, media_type, _kind_of(data, media_type, limits))


def read_bytes(media: MediaSource, max_bytes: int) -> bytes:
    """All bytes of ``media``, reading at most ``max_bytes + 1`` to detect an oversized upload."""
    if isinstance(media, bytes | bytearray | memoryview):
        data = bytes(media)
    elif isinstance(media, str | os.PathLike):
        try:
            with open(media, "rb") as fh:
                data = _read_stream(fh, max_bytes)
        except OSError as exc:
            raise MediaError(f"cannot read {os.fspath(media)!r}: {exc.strerror or exc}") from exc
    elif isinstance(media, io.TextIOBase):
        raise ConfigError("media is a text-mode file object; open the file in binary mode ('rb')")
    elif hasattr(media, "read"):
        data = _read_stream(media, max_bytes)
    else:
        raise ConfigError(
            f"media must be bytes, a path or a binary file object, not {type(media).__name__}"
        )
    if len(data) > max_bytes:
        raise MediaTooLargeError(f"upload is larger than max_bytes={max_bytes}", limit="max_bytes")
    return data


def _read_stream(stream: BinaryIO, max_bytes: int) -> bytes:
    """Read until EOF or just past ``max_bytes``; works on pipes and other unseekable streams."""
    parts: list[bytes] = []
    total = 0
    while total <= max_bytes:
        chunk = stream.read(min(_CHUNK, max_bytes + 1 - total))
        if chunk is None:
            raise ConfigError("media stream is non-blocking and has no data ready")
        if isinstance(chunk, str):
            raise ConfigError("media is a text-mode file object; open it in binary mode ('rb')")
        if not chunk:
            break
        parts.append(bytes(chunk))
        total += len(chunk)
    return b"".join(parts)


# ----------------------------------------------------------------------------- sniffing

_MP4_BRANDS = frozenset(
    b.encode()
    for b in (
        "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "mp41", "mp42", "mp71", "avc1", "dash",
        "M4V ", "M4VH", "M4VP", "M4A ", "f4v ", "MSNV", "NDAS", "NDSC", "NDSH", "NDSM", "NDSP",
        "NDSS", "NDXC", "NDXH", "NDXM", "NDXP", "NDXS", "3gp4", "3gp5", "3gp6", "3gp7", "3ge6",
        "3ge7", "3gg6", "3g2a", "3g2b", "3g2c", "mmp4", "XAVC", "CAEP",
    )
)  # fmt: skip
_HEIC_BRANDS = frozenset(
    b.encode() for b in ("heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs")
)
_AVIF_BRANDS = frozenset((b"avif", b"avis"))


def sniff(data: bytes) -> str:
    """MIME type of ``data`` from its magic bytes; ``UnsupportedMediaError`` if unknown."""
    head = data[:64]
    if not head:
        raise UnsupportedMediaError("upload is empty (0 bytes)")
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[:2] == b"BM" and len(head) >= 26:
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in data[:256] else "video/x-matroska"
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(data)
    raise UnsupportedMediaError("unrecognised file format (magic bytes match no supported type)")


def _sniff_ftyp(data: bytes) -> str:
    (box_size,) = struct.unpack(">I", data[:4])
    box_end = min(len(data), max(16, box_size if box_size >= 16 else 16), 4096)
    major = data[8:12]
    brands = {major} | {data[i : i + 4] for i in range(16, box_end - 3, 4)}
    if major in _AVIF_BRANDS or (major in (b"mif1", b"msf1") and brands & _AVIF_BRANDS):
        return "image/avif"
    if major in _HEIC_BRANDS or major in (b"mif1", b"msf1"):
        return "image/heic"
    if major == b"qt  ":
        return "video/quicktime"
    if major in _MP4_BRANDS or brands & _MP4_BRANDS:
        return "video/mp4"
    if major == b"crx ":  # Canon raw shares the container; not a format we decode
        raise UnsupportedMediaError("Canon CR3 raw images are not supported")
    raise UnsupportedMediaError(f"unsupported ISO media brand {major.decode('latin-1')!r}")


# ----------------------------------------------------------------------------- decoding

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


def _kind_of(data: bytes, media_type: str, limits: Limits) -> MediaKind:
    if media_type.startswith("video/"):
        return MediaKind.VIDEO
    if media_type not in ("image/gif", "image/webp", "image/png"):
        return MediaKind.IMAGE
    image = open_image(data, media_type, limits)  # header only; the pixel check comes first
    with decode_errors(media_type):
        animated = bool(getattr(image, "is_animated", False))
    return MediaKind.VIDEO if animated else MediaKind.IMAGE
