"""``hash_file`` end to end on real media: digests, PDQ, imagehash, and hostile input."""

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


def test_large_file_digests_are_exact(data_dir: Path) -> None:
    path = data_dir / "threatexchange/pdq/data/reg-test-input/exif-rotn/exif-rotn-6.jpg"
    data = path.read_bytes()
    assert len(data) > 1 << 20  # the digests run on the worker thread for this one
    result = hash_file(data)
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.sha256 == hashlib.sha256(data).hexdigest()


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


def test_unknown_and_uncomputable_extra_names(data_dir: Path) -> None:
    path = data_dir / BRIDGE
    with pytest.raises(UnknownHashTypeError):
        hash_file(path, extra=["nosuchhash"])
    with pytest.raises(ConfigError):
        hash_file(path, extra="phash")  # type: ignore[arg-type]
    assert hash_file(path, extra=["md5", "pdq"]).extra == {}


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


def test_hash_upload_gives_dihedral_queries(data_dir: Path) -> None:
    data = (data_dir / BRIDGE).read_bytes()
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


def bad_inputs(data_dir: Path) -> dict[str, bytes]:
    jpeg = (data_dir / BRIDGE).read_bytes()
    png = (data_dir / "kodak/kodim05.png").read_bytes()
    gif = (data_dir / "pillow/Tests/images/hopper.gif").read_bytes()
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


def test_bad_input_gives_typed_errors_quickly(data_dir: Path, tmp_path: Path) -> None:
    inputs = bad_inputs(data_dir)
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


def test_limits_are_enforced(data_dir: Path) -> None:
    path = data_dir / "kodak/kodim05.png"
    with pytest.raises(MediaTooLargeError) as info:
        hash_file(path, limits=Limits(max_bytes=1000))
    assert info.value.limit == "max_bytes"
    with pytest.raises(MediaTooLargeError) as info:
        hash_file(path, limits=Limits(max_pixels=512 * 700))
    assert info.value.limit == "max_pixels"


_MEMORY_PROBE = """
import resource, sys, time
sys.path[:0] = {paths!r}
from tests.test_hash_file import bad_inputs
from pathlib import Path
from uploadscan.hashing._hash_file import hash_file
from uploadscan import MediaError
import json
inputs = bad_inputs(Path({data_dir!r}))
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


def test_bad_input_memory_stays_bounded(data_dir: Path) -> None:
    project = Path(__file__).resolve().parent.parent
    code = _MEMORY_PROBE.format(paths=[str(project), *sys.path], data_dir=str(data_dir))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["maxrss_kb"] < 500 * 1024, report
    assert report["worst_seconds"] < 2.0, report


def test_screenshot_of_a_listed_photo_gets_a_trimmed_query(data_dir: Path) -> None:
    """A photo pasted into an app window (title bar, grey background, caption text) is
    queried cropped to the picture too, and that query is within PDQ's threshold of the
    reference hash of the photo itself."""
    from PIL import ImageDraw

    photo = Image.open(data_dir / "kodak" / "kodim03.png").convert("RGB")
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
