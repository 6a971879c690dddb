"""Media intake: read an upload within limits, digest its bytes as they arrive, name its type.

Everything here treats the upload as hostile. The bytes are read once, at most ``max_bytes``
of them, and MD5 and SHA-256 (any byte-level hash a list needs) are computed from those bytes
as they are read, before and independent of any decoding: a PDF manifesto, a ZIP, a truncated
JPEG or random bytes must still meet the exact-hash lists that name them. The type comes from
the first bytes only (a name or a Content-Type header is whatever the uploader wanted it to
be); bytes that are not media we decode are ``MediaKind.OTHER``, which is not an error.
"""

from __future__ import annotations

import io
import os
import queue
import struct
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO, Protocol

from .._errors import ConfigError, MediaTooLargeError, UnsupportedMediaError, UploadReadError
from ._image import decode_errors, open_image
from ._limits import Limits

#: What every entry point accepts as an upload.
MediaSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO

_CHUNK = 1 << 20
#: Uploads up to this size are digested inline; larger ones on a worker thread, so that a big
#: photo's digests overlap its decode (hashlib releases the GIL).
_DIGEST_INLINE_BYTES = 1 << 20


class MediaKind(Enum):
    """How an upload is hashed: one still image, frame by frame, or by its bytes only."""

    IMAGE = "image"
    VIDEO = "video"
    OTHER = "other"


class ByteDigest(Protocol):
    """What ``hashlib`` objects offer; any byte-level hash type provides one per upload."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


DigestFactory = Callable[[], ByteDigest]


@dataclass(frozen=True, slots=True)
class MediaInput:
    """The bytes of one upload, the type sniffed from them, and the digests of the bytes.

    Animated GIF, WebP and PNG have an image ``media_type`` but ``kind`` VIDEO, so their frames
    are hashed like a video's.
    """

    data: bytes
    media_type: str
    kind: MediaKind
    digests: Mapping[str, str]

    @property
    def size(self) -> int:
        return len(self.data)


# ----------------------------------------------------------------------------- digests

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


class DigestFeed:
    """Digests of an upload's bytes, fed chunk by chunk as they are read.

    The first MiB is digested inline; past that, chunks are queued to one worker task that
    digests them in order while the reader (and later the decoder) carries on. ``result()``
    waits for the worker and is safe to call more than once.
    """

    def __init__(self, factories: Mapping[str, DigestFactory]) -> None:
        self._hashers = [(name, factory()) for name, factory in factories.items()]
        self._inline = 0
        self._queue: queue.SimpleQueue[memoryview | None] | None = None
        self._future: Future[None] | None = None
        self._result: dict[str, str] | None = None

    def feed(self, chunk: bytes | memoryview) -> None:
        if not self._hashers or not len(chunk):
            return
        view = memoryview(chunk)
        if self._queue is None and self._inline + len(view) <= _DIGEST_INLINE_BYTES:
            self._inline += len(view)
            self._update(view)
            return
        if self._queue is None:
            self._queue = queue.SimpleQueue()
            self._future = _digest_executor().submit(self._drain, self._queue)
        self._queue.put(view)

    def _update(self, view: memoryview) -> None:
        for _, hasher in self._hashers:
            hasher.update(view)  # type: ignore[arg-type]  # hashlib takes any buffer

    def _drain(self, chunks: queue.SimpleQueue[memoryview | None]) -> None:
        while (view := chunks.get()) is not None:
            self._update(view)

    def result(self) -> dict[str, str]:
        """Name to lowercase hex digest of everything fed."""
        if self._result is None:
            if self._queue is not None and self._future is not None:
                self._queue.put(None)
                self._future.result()
            self._result = {name: hasher.hexdigest() for name, hasher in self._hashers}
        return self._result


# ----------------------------------------------------------------------------- reading


def read_upload(media: MediaSource, limits: Limits, digests: DigestFeed) -> bytes:
    """All bytes of an upload (bytes, a path, or a binary file object), fed to ``digests``
    as they are read, at most ``max_bytes + 1`` of them to detect an oversized upload.

    ``UploadReadError`` when a path cannot be read (missing, a directory): that is the
    caller's problem, not the content's. ``MediaTooLargeError`` past ``max_bytes``.
    """
    max_bytes = limits.max_bytes
    if isinstance(media, bytes | bytearray | memoryview):
        data = bytes(media)
        if len(data) <= max_bytes:
            digests.feed(data)
    elif isinstance(media, str | os.PathLike):
        try:
            with open(media, "rb") as fh:
                data = _read_stream(fh, max_bytes, digests)
        except IsADirectoryError:
            raise UploadReadError(f"{os.fspath(media)!r} is a directory, not a file") from None
        except OSError as exc:
            raise UploadReadError(
                f"cannot read {os.fspath(media)!r}: {exc.strerror or exc}"
            ) from exc
    elif isinstance(media, io.TextIOBase):
        raise ConfigError("media is a text-mode file object; open the file in binary mode ('rb')")
    elif hasattr(media, "read"):
        data = _read_stream(media, max_bytes, digests)
    else:
        raise ConfigError(
            f"media must be bytes, a path or a binary file object, not {type(media).__name__}"
        )
    if len(data) > max_bytes:
        digests.result()  # let the worker finish before the bytes are dropped
        raise MediaTooLargeError(f"upload is larger than max_bytes={max_bytes}", limit="max_bytes")
    return data


def _read_stream(stream: BinaryIO, max_bytes: int, digests: DigestFeed) -> bytes:
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
        chunk = bytes(chunk)
        parts.append(chunk)
        total += len(chunk)
        if total <= max_bytes:
            digests.feed(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def classify(data: bytes, limits: Limits) -> tuple[str, MediaKind]:
    """The sniffed media type and how to hash it.

    Raises ``MediaError`` only for media we recognise but cannot use (an unsupported variant,
    a header that does not parse); bytes that are not media are ``MediaKind.OTHER``.
    """
    media_type = sniff(data)
    if media_type is None:
        return other_type(data), MediaKind.OTHER
    return media_type, _kind_of(data, media_type, limits)


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


def sniff(data: bytes) -> str | None:
    """MIME type of ``data`` from its magic bytes when it is media we decode, ``None`` when it
    is not media at all. ``UnsupportedMediaError`` for media we recognise but cannot hash
    (a raw camera format, an ISO container of an unknown brand): those still take the scanner's
    fail mode, since their content might be a listed picture we cannot see."""
    head = data[:64]
    if not head:
        return None
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
    for magic, media_type in _UNDECODED_MEDIA:
        if head.startswith(magic):
            raise UnsupportedMediaError(
                f"{media_type} is media we recognise but do not decode; only its exact "
                "hashes can be matched",
                media_type=media_type,
            )
    if len(data) >= 3 * 188 and all(data[i] == 0x47 for i in (0, 188, 376)):
        raise UnsupportedMediaError(
            "video/mp2t (MPEG transport stream) is not a container we decode",
            media_type="video/mp2t",
        )
    return None


#: Image and video formats we recognise but do not decode. They are not "not media": a listed
#: picture may hide in them, so they take the scanner's fail mode rather than the non-media
#: action, while their exact hashes are still matched.
_UNDECODED_MEDIA = (
    (b"\xff\x0a", "image/jxl"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "image/jxl"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "image/jp2"),
    (b"\xff\x4f\xff\x51", "image/jp2"),
    (b"8BPS", "image/vnd.adobe.photoshop"),
    (b"FLV\x01", "video/x-flv"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "video/x-ms-asf"),
    (b"\x00\x00\x01\xba", "video/mpeg"),
    (b"\x00\x00\x01\xb3", "video/mpeg"),
    (b"OggS", "video/ogg"),
)


#: Common non-media formats, named in verdicts and reports; anything else is octet-stream.
_OTHER_MAGIC = (
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
)


def other_type(data: bytes) -> str:
    """A MIME type for bytes that are not media we decode (for verdicts and reports only)."""
    for magic, media_type in _OTHER_MAGIC:
        if data.startswith(magic):
            return media_type
    return "application/octet-stream"


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


def _kind_of(data: bytes, media_type: str, limits: Limits) -> MediaKind:
    if media_type.startswith("video/"):
        return MediaKind.VIDEO
    if media_type not in ("image/gif", "image/webp", "image/png"):
        return MediaKind.IMAGE
    image = open_image(data, media_type, limits)  # header only; the pixel check comes first
    with decode_errors(media_type):
        animated = bool(getattr(image, "is_animated", False))
    return MediaKind.VIDEO if animated else MediaKind.IMAGE
