"""``hash_file`` end to end on real media: digests, PDQ, imagehash, and hostile input.

On the bundled fixtures (and copies the tests make from them: pixel modes, formats, EXIF
orientations, hostile cuts), with the extended corpus adding upstream files and published values.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from _media import FIXTURES, both, fixture, media
from _reference import hamming, reference_pdq
from PIL import Image

from uploadscan import (
    ConfigError,
    CorruptMediaError,
    MediaError,
    MediaTooLargeError,
    UnknownHashTypeError,
    UnsupportedMediaError,
)
from uploadscan.hashing._hash_file import hash_file, hash_upload, types_for
from uploadscan.hashtypes import Md5HashType, Sha256HashType
from uploadscan.media._limits import Limits

BRIDGE = "threatexchange/pdq/data/bridge-mods/aaa-orig.jpg"
PHOTO = fixture("scene_a.jpg")
PNG_PHOTO = fixture("scene_c.png")


def test_digests_and_sizes_of_every_fixture() -> None:
    files = sorted(
        p
        for p in FIXTURES.iterdir()
        if p.suffix in (".jpg", ".png", ".gif", ".mp4", ".webm", ".txt", ".md", ".py")
    )
    assert len(files) >= 14
    for path in files:
        data = path.read_bytes()
        result = hash_file(path)
        assert result.md5 == hashlib.md5(data).hexdigest(), path.name
        assert result.sha256 == hashlib.sha256(data).hexdigest(), path.name
        assert result.size == len(data), path.name
        if path.suffix in (".jpg", ".png"):
            with Image.open(path) as image:
                assert (result.width, result.height) == image.size, path.name
        elif path.suffix in (".txt", ".md", ".py"):
            assert (result.is_media, result.pdq) == (False, None), path.name


@pytest.mark.extended
def test_digests_match_hashlib_and_the_computed_table(data_dir: Path) -> None:
    table = data_dir / "expected_computed" / "images_pdq_imagehash.csv"
    with table.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if not r["error"]][:40]
    assert len(rows) == 40
    for row in rows:
        path = data_dir / row["file"]
        data = path.read_bytes()
        try:
            result = hash_file(path)
        except UnsupportedMediaError:
            continue  # animated GIF without the video hasher, HEIC without its plug-in
        assert result.sha256 == row["sha256"] == hashlib.sha256(data).hexdigest()
        assert result.md5 == hashlib.md5(data).hexdigest()
        assert result.size == len(data) == int(row["bytes"])
        assert (result.width, result.height) == (int(row["width"]), int(row["height"]))


def test_large_file_digests_are_exact() -> None:
    with Image.open(fixture("scene_large.jpg")) as image:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")  # the scene's 1600x1200 pixels, losslessly: about 3 MB
    data = buffer.getvalue()
    assert len(data) > 1 << 20  # the digests run on the worker thread for this one
    result = hash_file(data)
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.extended
def test_imagehash_known_values(data_dir: Path) -> None:
    result = hash_file(
        data_dir / "imagehash/tests/data/imagehash.png", extra=["ahash", "phash", "dhash", "whash"]
    )
    assert result.extra == {
        "ahash": "ffd7918181c9ffff",
        "phash": "ba8c84536bd3c366",
        "dhash": "0026273b2b19550e",
        "whash": "ffd391818181a5e7",
    }
    assert "phash" in result.hashes()


def test_unknown_and_uncomputable_extra_names() -> None:
    path = PHOTO
    with pytest.raises(UnknownHashTypeError):
        hash_file(path, extra=["nosuchhash"])
    with pytest.raises(ConfigError):
        hash_file(path, extra="phash")  # type: ignore[arg-type]
    assert hash_file(path, extra=["md5", "pdq"]).extra == {}


def _mode_copies(tmp_path: Path) -> list[Path]:
    """The scene in every pixel mode Pillow writes, in the formats that store each."""
    with Image.open(PHOTO) as opened:
        rgb = opened.convert("RGB")
    grey = rgb.convert("L")
    copies = {
        "1.png": rgb.convert("1"),
        "L.png": grey,
        "LA.png": rgb.convert("LA"),
        "P.png": rgb.convert("P"),
        "RGBA.png": rgb.convert("RGBA"),
        "I16.png": Image.fromarray(
            np.asarray(grey, np.uint16)
        ),  # values 0-255, as I16.png upstream
        "I.tif": grey.convert("I"),
        "F.tif": grey.convert("F"),
        "CMYK.jpg": rgb.convert("CMYK"),
        "CMYK.tif": rgb.convert("CMYK"),
        "YCbCr.jpg": rgb.convert("YCbCr"),
        "LAB.tif": rgb.convert("LAB"),
    }
    paths = []
    for name, image in copies.items():
        path = tmp_path / name
        image.save(path)
        paths.append(path)
    return paths


def test_every_pixel_mode_of_a_fixture_hashes_close_to_reference(tmp_path: Path) -> None:
    for path in _mode_copies(tmp_path):
        data = path.read_bytes()
        result = hash_file(data)
        expected, quality = reference_pdq(data)
        assert result.pdq is not None, path.name
        assert hamming(result.pdq, expected) <= 10, path.name
        assert result.pdq_quality == quality, path.name


@pytest.mark.extended
def test_every_pixel_mode_hashes_close_to_reference(data_dir: Path) -> None:
    folder = data_dir / "threatexchange/pdq/data/misc-images/modes"
    files = sorted(p for p in folder.iterdir() if p.suffix != ".md")
    assert len(files) >= 13
    for path in files:
        data = path.read_bytes()
        result = hash_file(data)
        expected, quality = reference_pdq(data)
        assert result.pdq is not None
        assert hamming(result.pdq, expected) <= 10, path.name
        assert result.pdq_quality == quality, path.name


def _with_orientation(data: bytes, orientation: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_orientation_of_a_fixture_is_not_applied() -> None:
    """Like the reference (and ThreatExchange lists), PDQ is of the stored pixels."""
    phone = fixture("scene_exif6.jpg").read_bytes()
    with Image.open(io.BytesIO(phone)) as image:
        assert image.getexif()[0x0112] == 6
    stored = reference_pdq(phone)[0]
    for orientation in range(1, 9):
        data = phone if orientation == 6 else _with_orientation(phone, orientation)
        result = hash_file(data)
        assert result.pdq is not None
        assert hamming(result.pdq, reference_pdq(data)[0]) <= 10, orientation
        assert hamming(result.pdq, stored) <= 10, orientation  # the same stored pixels


@pytest.mark.extended
def test_exif_orientation_is_not_applied(data_dir: Path) -> None:
    """Like the reference (and ThreatExchange lists), PDQ is of the stored pixels."""
    files = sorted((data_dir / "exif-orientation-examples").glob("*.jpg"))
    files += sorted((data_dir / "threatexchange/pdq/data/reg-test-input/exif-rotn").glob("*.jpg"))
    files.append(data_dir / "immich-test-assets/metadata/faces/portrait-orientation-6.jpg")
    for path in files:
        data = path.read_bytes()
        result = hash_file(data)
        expected, _ = reference_pdq(data)
        assert result.pdq is not None
        assert hamming(result.pdq, expected) <= 10, path.name


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("WEBP", {"quality": 80}),
        ("WEBP", {"lossless": True}),
        ("AVIF", {"quality": 70}),
        ("TIFF", {"compression": "tiff_deflate"}),
        ("BMP", {}),
        ("JPEG2000", {}),
    ],
    ids=["webp", "webp-lossless", "avif", "tiff", "bmp", "jpeg2000"],
)
def test_formats_of_a_fixture(fmt: str, options: dict[str, object]) -> None:
    from PIL import features

    if fmt == "AVIF" and not features.check("avif"):
        pytest.fail("this Pillow cannot write AVIF; uploadscan's intake expects it to read it")
    with Image.open(PHOTO) as image:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
    data = buffer.getvalue()
    if fmt == "JPEG2000":  # recognised, not decoded: a typed error (the fail mode), not "allow"
        with pytest.raises(UnsupportedMediaError, match="image/jp2"):
            hash_file(data)
        return
    result = hash_file(data)
    assert result.pdq is not None
    assert hamming(result.pdq, reference_pdq(data)[0]) <= 10


@pytest.mark.extended
def test_modern_formats(data_dir: Path) -> None:
    for name in [
        "immich-test-assets/formats/avif/8bit-sRGB.avif",
        "pillow/Tests/images/avif/rot1mir1.avif",
        "immich-test-assets/formats/webp/denali.webp",
        "pillow/Tests/images/flower.webp",
        "pillow/Tests/images/hopper.tif",
    ]:
        data = (data_dir / name).read_bytes()
        result = hash_file(data)
        assert result.pdq is not None
        assert hamming(result.pdq, reference_pdq(data)[0]) <= 10, name
    heic = data_dir / "immich-test-assets/formats/heic/IMG_2682.heic"
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        with pytest.raises(UnsupportedMediaError) as info:
            hash_file(heic)
        assert info.value.extra == "heif"
        assert info.value.media_type == "image/heic"
    else:
        assert hash_file(heic).pdq is not None


def test_hash_upload_gives_dihedral_queries() -> None:
    data = PHOTO.read_bytes()
    scan = hash_upload(data, types=types_for([]))
    pdqs = [q for q in scan.queries if q.hash_type == "pdq"]
    assert [q.variant for q in pdqs] == list(range(8))
    with Image.open(io.BytesIO(data)) as image:
        expected, _ = pdqhash.compute_dihedral(np.asarray(image.convert("RGB")))
    for query, bits in zip(pdqs, expected, strict=True):
        assert hamming(query.value, np.packbits(bits.astype(np.uint8)).tobytes().hex()) <= 10
    digests_only = hash_upload(data, types=[Md5HashType(), Sha256HashType()])
    assert digests_only.result.pdq is None
    assert {q.hash_type for q in digests_only.queries} == {"md5", "sha256"}


# ----------------------------------------------------------------------------- hostile input


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def decompression_bomb_png() -> bytes:
    """A few-KB PNG whose header claims 50000 x 50000 pixels."""
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (50_001 * 20), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def huge_screen_gif() -> bytes:
    """A valid 1x1-frame GIF on a 65535 x 65535 logical screen."""
    small = io.BytesIO()
    Image.new("P", (1, 1)).save(small, "GIF")
    data = bytearray(small.getvalue())
    data[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def corrupt_exif_jpeg(data: bytes) -> bytes:
    junk = b"Exif\x00\x00" + b"MM\x00\x2a\xff\xff\xff\xff" + b"\xde\xad" * 40
    segment = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    return data[:2] + segment + data[2:]


def bad_inputs(fixtures: Path = FIXTURES) -> dict[str, bytes]:
    jpeg = (fixtures / "scene_a.jpg").read_bytes()
    png = (fixtures / "scene_c.png").read_bytes()
    with Image.open(fixtures / "scene_c.png") as image:
        still = io.BytesIO()
        image.quantize(colors=256).save(still, "GIF")  # a still GIF: cut, it is corrupt
    gif = still.getvalue()
    return {
        "empty": b"",
        "text": b"this is plain text pretending to be a photo\n" * 10,
        "jpeg_header_only": jpeg[:200],
        "jpeg_half": jpeg[: len(jpeg) // 2],
        "jpeg_no_eoi": jpeg[:-2],
        "png_header_only": png[:60],
        "png_half": png[: len(png) // 2],
        "gif_half": gif[: len(gif) // 2],
        "gif_header_only": gif[:13],
        "bomb": decompression_bomb_png(),
        "huge_gif_screen": huge_screen_gif(),
        "corrupt_exif": corrupt_exif_jpeg(jpeg),
    }


#: Bytes that are not media: no error, the digests and no perceptual hash.
NOT_MEDIA = "not media"

EXPECTED_ERRORS: dict[str, type[MediaError] | str | None] = {
    "empty": NOT_MEDIA,
    "text": NOT_MEDIA,
    "jpeg_header_only": CorruptMediaError,
    "jpeg_half": CorruptMediaError,
    "jpeg_no_eoi": CorruptMediaError,  # Pillow refuses truncated JPEGs, even by two bytes
    "png_header_only": CorruptMediaError,
    "png_half": CorruptMediaError,
    "gif_half": CorruptMediaError,
    "gif_header_only": CorruptMediaError,
    "bomb": MediaTooLargeError,
    "huge_gif_screen": MediaTooLargeError,
    "corrupt_exif": None,  # EXIF is never parsed: same pixels, same hash
}


def test_bad_input_gives_typed_errors_quickly(tmp_path: Path) -> None:
    inputs = bad_inputs()
    assert inputs.keys() == EXPECTED_ERRORS.keys()
    for name, data in inputs.items():
        started = time.monotonic()
        expected = EXPECTED_ERRORS[name]
        if expected is None:
            result = hash_file(data)
            assert result.pdq is not None
            assert hamming(result.pdq, reference_pdq(data)[0]) <= 10, name
        elif expected == NOT_MEDIA:
            result = hash_file(data)
            assert (result.pdq, result.is_media) == (None, False), name
            assert result.md5 == hashlib.md5(data).hexdigest(), name
            assert result.sha256 == hashlib.sha256(data).hexdigest(), name
        else:
            assert not isinstance(expected, str)
            with pytest.raises(expected):
                hash_file(data)
        assert time.monotonic() - started < 2.0, name
    # The name is never trusted: text saved as .jpg is still text, hashed by its bytes only.
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(inputs["text"])
    result = hash_file(fake)
    assert (result.media_type, result.pdq) == ("application/octet-stream", None)


def test_limits_are_enforced() -> None:
    path = PNG_PHOTO  # 480 x 360
    with pytest.raises(MediaTooLargeError) as info:
        hash_file(path, limits=Limits(max_bytes=1000))
    assert info.value.limit == "max_bytes"
    assert hash_file(path, limits=Limits(max_pixels=480 * 360)).pdq is not None
    with pytest.raises(MediaTooLargeError) as info:
        hash_file(path, limits=Limits(max_pixels=480 * 360 - 1))
    assert info.value.limit == "max_pixels"


_MEMORY_PROBE = """
import resource, sys, time
sys.path[:0] = {paths!r}
from tests.test_hash_file import bad_inputs
from pathlib import Path
from uploadscan.hashing._hash_file import hash_file
from uploadscan import MediaError
import json
inputs = bad_inputs(Path({fixtures!r}))
worst = 0.0
for name, data in inputs.items():
    started = time.monotonic()
    try:
        hash_file(data)
    except MediaError:
        pass
    worst = max(worst, time.monotonic() - started)
# VmHWM is this process's own peak; ru_maxrss can carry the forking parent's peak over exec.
try:
    status = open("/proc/self/status").read()
    peak_kb = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
except OSError:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"maxrss_kb": peak_kb, "worst_seconds": worst}}))
"""


def test_bad_input_memory_stays_bounded() -> None:
    project = Path(__file__).resolve().parent.parent
    paths = [str(project), str(project / "tests"), *sys.path]
    code = _MEMORY_PROBE.format(paths=paths, fixtures=str(FIXTURES))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["maxrss_kb"] < 500 * 1024, report
    assert report["worst_seconds"] < 2.0, report


@pytest.mark.parametrize("name", both(["scene_b.jpg"], ["kodak/kodim03.png"]))
def test_screenshot_of_a_listed_photo_gets_a_trimmed_query(
    request: pytest.FixtureRequest, name: str
) -> None:
    """A photo pasted into an app window (title bar, grey background, caption text) is
    queried cropped to the picture too, and that query is within PDQ's threshold of the
    reference hash of the photo itself."""
    from PIL import ImageDraw

    photo = Image.open(media(request, name)).convert("RGB")
    canvas = Image.new("RGB", (900, 760), (236, 236, 240))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 900, 50), fill=(40, 44, 52))
    draw.text((20, 15), "Photos - Viewer", fill=(220, 220, 220))
    canvas.paste(photo.resize((600, 400)), (50, 100))
    for k in range(3):
        draw.text((50, 540 + 40 * k), "1,204 likes  reply  share", fill=0)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    bits, _ = pdqhash.compute(np.asarray(photo))
    listed = np.packbits(bits.astype(np.uint8)).tobytes().hex()
    hashed = hash_upload(buffer.getvalue(), types=types_for([]))
    queries = [q.value for q in hashed.queries if q.hash_type == "pdq"]
    assert hamming(queries[0], listed) > 31  # the screenshot as a whole does not match
    assert min(hamming(q, listed) for q in queries) <= 31
