"""Media intake: reading within limits, sniffing magic bytes, safe opening.

On the bundled fixtures and files Pillow writes here; the extended corpus adds upstream
projects' files (HEIC, JPEG XL, AVIF from cameras and test suites).
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
from _media import ANIMATED_GIF, CLIP_A, CLIP_B, fixture
from PIL import Image

from uploadscan import (
    ConfigError,
    CorruptMediaError,
    MediaTooLargeError,
    UnsupportedMediaError,
    UploadReadError,
)
from uploadscan.media._image import open_image
from uploadscan.media._intake import (
    DigestFeed,
    MediaInput,
    MediaKind,
    MediaSource,
    classify,
    read_upload,
    sniff,
)
from uploadscan.media._limits import DEFAULT_LIMITS, Limits


def read_media(media: MediaSource, limits: Limits) -> MediaInput:
    """Read and classify an upload the way the hashing pass does (digests left out)."""
    data = read_upload(media, limits, DigestFeed({}))
    media_type, kind = classify(data, limits)
    return MediaInput(data, media_type, kind, {})


FIXTURE_SNIFF_CASES = [
    ("scene_a.jpg", "image/jpeg"),
    ("scene_c.png", "image/png"),
    (ANIMATED_GIF, "image/gif"),
    (CLIP_A, "video/mp4"),
    (CLIP_B, "video/webm"),
]

SNIFF_CASES = [
    ("pillow/Tests/images/hopper.jpg", "image/jpeg"),
    ("pillow/Tests/images/hopper.png", "image/png"),
    ("pillow/Tests/images/hopper.gif", "image/gif"),
    ("pillow/Tests/images/hopper.webp", "image/webp"),
    ("pillow/Tests/images/hopper.tif", "image/tiff"),
    ("pillow/Tests/images/avif/rot0mir0.avif", "image/avif"),
    ("immich-test-assets/formats/avif/8bit-sRGB.avif", "image/avif"),
    ("immich-test-assets/formats/heic/IMG_2682.heic", "image/heic"),
    ("imageio-binaries/images/cockatoo.mp4", "video/mp4"),
    ("synthetic-videos/multishot_4photos_vp9.webm", "video/webm"),
]


def _bmp_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(out, "BMP")
    return out.getvalue()


@pytest.mark.parametrize(("name", "media_type"), FIXTURE_SNIFF_CASES)
def test_sniff_fixtures(name: str, media_type: str) -> None:
    assert sniff(fixture(name).read_bytes()) == media_type


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [
        ("WEBP", "image/webp"),
        ("TIFF", "image/tiff"),
        ("AVIF", "image/avif"),
        ("BMP", "image/bmp"),
        ("GIF", "image/gif"),
    ],
)
def test_sniff_what_pillow_writes(fmt: str, media_type: str) -> None:
    out = io.BytesIO()
    with Image.open(fixture("scene_f.png")) as image:
        image.save(out, fmt)
    assert sniff(out.getvalue()) == media_type


@pytest.mark.extended
@pytest.mark.parametrize(("name", "media_type"), SNIFF_CASES)
def test_sniff_real_files(data_dir: Path, name: str, media_type: str) -> None:
    assert sniff((data_dir / name).read_bytes()) == media_type


@pytest.mark.parametrize(
    ("head", "media_type"),
    [
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", "video/quicktime"),
        (b"\x00\x00\x00\x18ftyp3gp5\x00\x00\x00\x003gp5isom", "video/mp4"),
        (b"\x00\x00\x00\x18ftypM4V \x00\x00\x00\x01M4V mp42", "video/mp4"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif", "image/avif"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "video/x-msvideo"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
    ],
)
def test_sniff_container_headers(head: bytes, media_type: str) -> None:
    assert sniff(head + b"\x00" * 64) == media_type


def test_sniff_bmp_and_never_the_name(tmp_path: Path) -> None:
    assert sniff(_bmp_bytes()) == "image/bmp"
    # A PNG renamed .jpg is still a PNG; plain text is nothing.
    renamed = tmp_path / "photo.jpg"
    renamed.write_bytes(fixture("scene_c.png").read_bytes())
    assert sniff(renamed.read_bytes()) == "image/png"
    assert read_media(renamed, DEFAULT_LIMITS).media_type == "image/png"
    # Not media at all: nothing to decode, not an error (only exact hashes apply).
    assert sniff(b"hello, this is not an image\n" * 4) is None
    assert sniff(b"") is None
    # Media we recognise but cannot decode is an error: it takes the fail mode. (JPEG XL's
    # container and codestream signatures; real files in the extended test below.)
    for head in (b"\x00\x00\x00\x0cJXL \r\n\x87\n", b"\xff\x0a"):
        with pytest.raises(UnsupportedMediaError):
            sniff(head + b"\x00" * 64)


@pytest.mark.extended
def test_sniff_real_jpeg_xl(data_dir: Path) -> None:
    with pytest.raises(UnsupportedMediaError):
        sniff((data_dir / "immich-test-assets/formats/jxl/8bit-sRGB.jxl").read_bytes())


def test_read_media_from_bytes_path_and_file() -> None:
    path = fixture("scene_a.jpg")
    data = path.read_bytes()
    for media in (data, bytearray(data), str(path), path):
        item = read_media(media, DEFAULT_LIMITS)
        assert item.data == data
        assert item.media_type == "image/jpeg"
        assert item.kind is MediaKind.IMAGE
    with path.open("rb") as fh:
        assert read_media(fh, DEFAULT_LIMITS).data == data


class _UnseekableReader(io.RawIOBase):
    """A raw stream that cannot seek and counts what was read from it."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._buffer.read(min(len(target), 4096))
        target[: len(chunk)] = chunk
        self.consumed += len(chunk)
        return len(chunk)


def test_read_media_from_unseekable_stream_and_pipe() -> None:
    data = fixture("scene_c.png").read_bytes()
    stream = _UnseekableReader(data)
    assert read_media(stream, DEFAULT_LIMITS).data == data

    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as writer:
            writer.write(data)

    writer_thread = threading.Thread(target=feed)
    writer_thread.start()
    with os.fdopen(read_fd, "rb", buffering=0) as reader:
        item = read_media(reader, DEFAULT_LIMITS)
    writer_thread.join()
    assert item.data == data
    assert item.media_type == "image/png"


def test_read_stops_just_past_max_bytes() -> None:
    stream = _UnseekableReader(b"\x89PNG\r\n\x1a\n" + b"\x00" * 1_000_000)
    with pytest.raises(MediaTooLargeError) as info:
        read_media(stream, Limits(max_bytes=10_000))
    assert info.value.limit == "max_bytes"
    assert stream.consumed <= 10_001


def test_text_mode_and_wrong_types_are_config_errors(tmp_path: Path) -> None:
    text = tmp_path / "note.jpg"
    text.write_text("not an image")
    with text.open("r") as fh, pytest.raises(ConfigError, match="binary mode"):
        read_media(fh, DEFAULT_LIMITS)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        read_media(12345, DEFAULT_LIMITS)  # type: ignore[arg-type]
    with pytest.raises(UploadReadError, match="cannot read"):
        read_media(tmp_path / "missing.jpg", DEFAULT_LIMITS)
    with pytest.raises(UploadReadError, match="is a directory"):
        read_media(tmp_path, DEFAULT_LIMITS)


def test_animated_images_are_videos() -> None:
    bouncing = read_media(fixture(ANIMATED_GIF), DEFAULT_LIMITS)
    assert (bouncing.media_type, bouncing.kind) == ("image/gif", MediaKind.VIDEO)
    out = io.BytesIO()
    with Image.open(fixture(ANIMATED_GIF)) as animation:
        animation.save(out, "GIF")  # the first frame only: a still GIF
    still = read_media(out.getvalue(), DEFAULT_LIMITS)
    assert (still.media_type, still.kind) == ("image/gif", MediaKind.IMAGE)
    frames = [Image.new("RGB", (32, 32), (i * 60, 0, 0)) for i in range(3)]
    for fmt, media_type in (("PNG", "image/png"), ("WEBP", "image/webp")):
        out = io.BytesIO()
        frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=100)
        item = read_media(out.getvalue(), DEFAULT_LIMITS)
        assert (item.media_type, item.kind) == (media_type, MediaKind.VIDEO)
    for name in (CLIP_A, CLIP_B):
        assert read_media(fixture(name), DEFAULT_LIMITS).kind is MediaKind.VIDEO


def test_open_image_checks_pixels_before_decoding() -> None:
    data = fixture("scene_c.png").read_bytes()
    with pytest.raises(MediaTooLargeError) as info:
        open_image(data, "image/png", Limits(max_pixels=1000))
    assert info.value.limit == "max_pixels"
    image = open_image(data, "image/png", DEFAULT_LIMITS)
    assert image.size == (480, 360)


@pytest.mark.extended
def test_heic_without_plugin_names_the_extra(data_dir: Path) -> None:
    data = (data_dir / "immich-test-assets/formats/heic/IMG_2682.heic").read_bytes()
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        with pytest.raises(UnsupportedMediaError) as info:
            open_image(data, "image/heic", DEFAULT_LIMITS)
        assert info.value.extra == "heif"
        assert "pip install uploadscan[heif]" in str(info.value)
    else:
        assert open_image(data, "image/heic", DEFAULT_LIMITS).size[0] > 0


def test_pillow_only_uses_the_sniffed_decoder() -> None:
    png = fixture("scene_c.png").read_bytes()
    with pytest.raises(CorruptMediaError):
        open_image(png, "image/jpeg", DEFAULT_LIMITS)
