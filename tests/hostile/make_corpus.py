"""Generate a corpus of hostile uploads into a directory.

    python tests/hostile/make_corpus.py OUT_DIR [--data-dir shared/data]

Every file is made here from small generated images and videos (``tests/fuzz/fuzzlib.py``
seeds) and a few bundled fixtures (``tests/fixtures``), so nothing large is committed;
``--data-dir`` adds cuts of small real files from the extended corpus.
``OUT_DIR/manifest.json`` says for each file what a correct outcome is;
``tests/test_hostile.py`` checks them. Categories:

- ``truncated``: every seed format cut at many points (inside the header, at chunk borders,
  and at fractions of the file).
- ``bomb``: decompression bombs in PNG, GIF, WebP, TIFF, JPEG and BMP: a few bytes or KB that
  declare billions of pixels, and a zlib stream that inflates to far more than its header says.
- ``video-bomb``: tiny MP4s patched to declare huge frames (the ``tkhd`` and ``avc1`` fields and
  the H.264 SPS in ``avcC``), an absurd duration or millions of samples.
- ``mp4-atoms``: malformed MP4 boxes: size 0 (runs to EOF), size 1 with a huge 64-bit size,
  sizes past the end of the file or the parent, a box claiming to contain itself, and chunk
  offsets pointing nowhere.
- ``animation``: GIFs that loop forever with thousands of frames, that claim huge canvases
  over tiny frames, or declare a frame count they do not have.
- ``polyglot``: JPEG with a ZIP appended, a GIF header that is also JavaScript, a PNG with HTML
  after IEND.
- ``lying-ext``: real images saved under the wrong extension (the type is sniffed from bytes).
- ``tiny``: zero-length and one-byte files, 1x1 images in every format.

Expectations: ``hash`` (media, hashed), ``error`` (media that must fail with one of the named
error types), ``either``, and ``bytes`` (not media at all: digests only, no error).
- ``modes``: CMYK, 16-bit, palette, alpha, 1-bit and float images.
- ``exif``: garbage, truncated, looping and oversized EXIF blocks.

Expectations (``expect`` in the manifest): ``"error"`` - an ``UploadScanError`` subclass (and
``error_types`` lists the acceptable ones); ``"hash"`` - a result, with ``pdq_reference``
when our PDQ must agree with the reference implementation on the full decode;
``"either"`` - a typed error or a result. ``same_as`` names a file whose hashes must be equal.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))

import fuzzlib

TOO_LARGE = ("MediaTooLargeError",)
BAD = ("MediaTooLargeError", "CorruptMediaError", "UnsupportedMediaError")


class Corpus:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.manifest: dict[str, dict[str, Any]] = {}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, category: str, name: str, data: bytes, expect: str, **info: Any) -> None:
        file_name = f"{category}--{name}"
        assert file_name not in self.manifest, file_name
        (self.out / file_name).write_bytes(data)
        self.manifest[file_name] = {"category": category, "expect": expect, **info}

    def write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1, sort_keys=True)
        (self.out / "manifest.json").write_text(text)


def _save(image: Any, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(width: int = 256, height: int = 192) -> Any:
    """A picture with enough structure for PDQ quality >= 80 (checked by the test)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    base = fuzzlib._pattern(width, height).astype(np.int16)
    blobs = rng.integers(0, 255, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.int16)
    coarse = np.kron(blobs, np.ones((16, 16, 1), dtype=np.int16))[:height, :width]
    return Image.fromarray(((base + coarse) // 2).astype(np.uint8))


# ----------------------------------------------------------------------------- truncation


def truncated(corpus: Corpus, seeds: dict[str, bytes]) -> None:
    for name, data in seeds.items():
        n = len(data)
        points = {1, 2, 3, 4, 6, 8, 11, 12, 16, 20, 24, 32, 48, 64, 100, 128, 200, 256, 512}
        points |= {n * k // 20 for k in range(1, 20)}
        points |= {n - 1, n - 2, n - 8}
        for point in sorted(p for p in points if 0 < p < n):
            corpus.add("truncated", f"{name}-at{point}", data[:point], "either")


# ----------------------------------------------------------------------------- image bombs


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes, color_type: int = 0, depth: int = 8) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _zeros_deflated(total: int) -> bytes:
    compressor = zlib.compressobj(9)
    block = b"\x00" * (1 << 20)
    parts = []
    left = total
    while left > 0:
        parts.append(compressor.compress(block[: min(left, len(block))]))
        left -= len(block)
    parts.append(compressor.flush())
    return b"".join(parts)


def _gif(
    screen: tuple[int, int],
    frame: tuple[int, int],
    frames: int = 1,
    loop: bool = True,
    delay: int = 2,
) -> bytes:
    """A GIF with a logical screen and ``frames`` identical frames, built by hand."""
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", screen[0], screen[1], 0x80, 0, 0)  # 2-colour global table
    out += b"\x00\x00\x00\xff\xff\xff"
    if loop:
        out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    width, height = frame
    # LZW for a frame of all-zero pixels, min code size 2: clear, then literal 0s, then end.
    pixels = bytes(width * height)
    data = _lzw_encode(pixels, 2)
    for index in range(frames):
        colour = index % 2
        out += struct.pack("<BBBBHB", 0x21, 0xF9, 4, 0x04, delay, 0) + b"\x00"  # GCE
        out += struct.pack("<BHHHHB", 0x2C, index % 7, 0, width, height, 0)
        out += bytes([2])
        frame_data = data if colour == 0 else _lzw_encode(bytes([1]) * (width * height), 2)
        for start in range(0, len(frame_data), 255):
            piece = frame_data[start : start + 255]
            out += bytes([len(piece)]) + piece
        out += b"\x00"
    out += b"\x3b"
    return bytes(out)


def _lzw_encode(pixels: bytes, min_code_size: int) -> bytes:
    """GIF LZW, resetting the table before it fills (simple, not optimal)."""
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    bits, nbits, acc = 0, 0, 0
    out = bytearray()

    def emit(code: int, size: int) -> None:
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += size
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8

    size = min_code_size + 1
    table: dict[bytes, int] = {}
    next_code = end + 1
    emit(clear, size)
    current = b""
    for value in pixels:
        candidate = current + bytes([value])
        if not current or candidate in table:
            current = candidate
            continue
        emit(table[current] if len(current) > 1 else current[0], size)
        if next_code < 4095:
            table[candidate] = next_code
            next_code += 1
            if next_code > (1 << size) and size < 12:
                size += 1
        else:
            emit(clear, size)
            table, next_code, size = {}, end + 1, min_code_size + 1
        current = bytes([value])
    if current:
        emit(table[current] if len(current) > 1 else current[0], size)
    emit(end, size)
    if nbits:
        out.append(acc & 0xFF)
    del bits
    return bytes(out)


def _patch_jpeg_sof(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    i = 2
    while i + 4 < len(out):
        marker = out[i + 1]
        (length,) = struct.unpack(">H", out[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            out[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(out)
        i += 2 + length
    raise ValueError("no SOF marker")


def _tiff_header(width: int, height: int, tiled: bool = False) -> bytes:
    """A little-endian TIFF declaring ``width`` x ``height`` 8-bit grey, with one tiny strip."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 8),  # deflate
        (262, 3, 1, 1),
        (277, 3, 1, 1),
    ]
    payload = zlib.compress(b"\x00" * 4096)
    data_offset = 8 + 2 + 12 * 12 + 4
    if tiled:
        entries += [
            (322, 3, 1, 256),
            (323, 3, 1, 256),
            (324, 4, 1, data_offset),
            (325, 4, 1, len(payload)),
        ]
    else:
        entries += [(273, 4, 1, data_offset), (278, 4, 1, height), (279, 4, 1, len(payload))]
    entries.sort()
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += b"\x00\x00\x00\x00"
    head = b"II*\x00" + struct.pack("<I", 8) + ifd
    return head.ljust(data_offset, b"\x00") + payload


def _webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8l = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + _vp8l_dims(width, height) + b"\x00"
    riff = b"WEBP" + body + vp8l
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def _vp8l_dims(width: int, height: int) -> bytes:
    bits = (min(width, 16384) - 1) | ((min(height, 16384) - 1) << 14)
    return struct.pack("<I", bits)


def _bmp_header(width: int, height: int, bpp: int = 24) -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, 0, 0, 2835, 2835, 0, 0)
    body = header + b"\x00" * 64
    return b"BM" + struct.pack("<IHHI", 14 + len(body), 0, 0, 54) + body


def bombs(corpus: Corpus) -> None:
    from PIL import Image

    add = corpus.add
    # PNG: huge declared dimensions with next to no data; and a compressed-zero bomb just over
    # the pixel limit (100 001 x 1 000), whose IDAT inflates to 100 MB from ~100 KB.
    add(
        "bomb",
        "png-65535x65535.png",
        _png(65535, 65535, zlib.compress(b"\x00" * 100)),
        "error",
        error_types=TOO_LARGE,
    )
    add(
        "bomb",
        "png-2e31-wide.png",
        _png(0x7FFFFFFF, 1, zlib.compress(b"\x00" * 100)),
        "error",
        error_types=BAD,
    )
    add(
        "bomb",
        "png-zeros-100001x1000.png",
        _png(100_001, 1000, _zeros_deflated(1000 * 100_002)),
        "error",
        error_types=TOO_LARGE,
    )
    # Extreme aspect ratios: within max_pixels, but PDQ's per-axis operator grows with the
    # long side (2,000,000 x 5 cost 6 GB before sides were capped at 65535).
    wide_row = b"\x00" + bytes(range(256)) * (2_000_000 // 256)
    add(
        "bomb",
        "png-2000000x5.png",
        _png(2_000_000, 5, zlib.compress(wide_row * 5, 9)),
        "error",
        error_types=TOO_LARGE,
    )
    cap_row = b"\x00" + bytes(range(256)) * 255 + bytes(255)
    add("bomb", "png-65535x5.png", _png(65535, 5, zlib.compress(cap_row * 5, 9)), "hash")
    # Header says 64x64 but the IDAT inflates to 200 MB: the decoder must stop at 64 rows.
    add("bomb", "png-idat-overflow.png", _png(64, 64, _zeros_deflated(200 << 20)), "either")
    add(
        "bomb",
        "png-rgba16-20000x20000.png",
        _png(20000, 20000, zlib.compress(b"\x00" * 100), color_type=6, depth=16),
        "error",
        error_types=TOO_LARGE,
    )
    # GIF: huge logical screen over a 1x1 frame; a huge frame descriptor.
    add(
        "bomb", "gif-screen-65535.gif", _gif((65535, 65535), (1, 1)), "error", error_types=TOO_LARGE
    )
    frame_bomb = bytearray(_gif((16, 16), (16, 16)))
    at = frame_bomb.index(b"\x2c")
    frame_bomb[at + 5 : at + 9] = struct.pack("<HH", 65535, 65535)
    add("bomb", "gif-frame-65535.gif", bytes(frame_bomb), "error", error_types=BAD)
    # WebP: VP8X canvas of 16384 x 16384 (268 M pixels) over a 1x1-ish bitstream.
    add("bomb", "webp-vp8x-16384.webp", _webp_vp8x(16384, 16384), "error", error_types=BAD)
    add("bomb", "webp-vp8x-max.webp", _webp_vp8x(1 << 24, 1 << 24), "error", error_types=BAD)
    # TIFF: 100 000 x 100 000 with one deflated strip, stripped and tiled.
    add(
        "bomb",
        "tiff-100000-strip.tif",
        _tiff_header(100_000, 100_000),
        "error",
        error_types=TOO_LARGE,
    )
    add(
        "bomb",
        "tiff-100000-tiled.tif",
        _tiff_header(100_000, 100_000, tiled=True),
        "error",
        error_types=TOO_LARGE,
    )
    add("bomb", "tiff-65535x1.tif", _tiff_header(65535, 1), "either")
    # JPEG: SOF patched to 65500 x 65500 (4.3 G pixels) in a 2 KB file.
    small = _save(_photo(32, 32), "JPEG")
    add(
        "bomb",
        "jpeg-sof-65500.jpg",
        _patch_jpeg_sof(small, 65500, 65500),
        "error",
        error_types=TOO_LARGE,
    )
    add("bomb", "jpeg-sof-0x0.jpg", _patch_jpeg_sof(small, 0, 0), "error", error_types=BAD)
    progressive = _save(_photo(32, 32), "JPEG", progressive=True)
    add(
        "bomb",
        "jpeg-progressive-sof-65500.jpg",
        _patch_jpeg_sof(progressive, 65500, 65500),
        "error",
        error_types=TOO_LARGE,
    )
    # BMP: 50 000 x 50 000 x 24 bit, and a negative (top-down) height of the same size.
    add("bomb", "bmp-50000.bmp", _bmp_header(50_000, 50_000), "error", error_types=BAD)
    add("bomb", "bmp-topdown-50000.bmp", _bmp_header(50_000, -50_000), "error", error_types=BAD)
    del Image


# ----------------------------------------------------------------------------- MP4 surgery

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta"}
_HEADER_SKIP = {b"stsd": 16, b"avc1": 86, b"mp4v": 86}


def mp4_boxes(
    data: bytes, start: int = 0, end: int | None = None, path: tuple[bytes, ...] = ()
) -> list[tuple[tuple[bytes, ...], int, int]]:
    """(path, offset, size) of every box, depth first."""
    end = len(data) if end is None else end
    out = []
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size < 8:
            break
        box_path = (*path, kind)
        out.append((box_path, offset, size))
        if kind in _CONTAINERS:
            out += mp4_boxes(data, offset + 8, offset + size, box_path)
        elif kind in _HEADER_SKIP:
            out += mp4_boxes(data, offset + _HEADER_SKIP[kind], offset + size, box_path)
        offset += size
    return out


def _find_box(data: bytes, kind: bytes) -> tuple[int, int]:
    for path, offset, size in mp4_boxes(data):
        if path[-1] == kind:
            return offset, size
    raise ValueError(f"no {kind!r} box")


def _patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _resize_box_content(data: bytes, at: int, old_len: int, new: bytes) -> bytes:
    """Replace ``old_len`` bytes at ``at`` and fix the size of every box that contains them.

    Only valid when no chunk offset points past ``at`` (the muxer put moov after mdat).
    """
    delta = len(new) - old_len
    out = bytearray(data[:at] + new + data[at + old_len :])
    for _, offset, size in mp4_boxes(data):
        if offset < at < offset + size:
            struct.pack_into(">I", out, offset, size + delta)
    return bytes(out)


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos // 8]
            value = (value << 1) | ((byte >> (7 - self.pos % 8)) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros)


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, value: int) -> None:
        code = value + 1
        length = code.bit_length()
        self.u(length - 1, 0)
        self.u(length, code)

    def tobytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def rewrite_sps(sps: bytes, width_mbs: int, height_mbs: int) -> bytes:
    """An H.264 SPS NAL with its picture size replaced (frame_mbs_only streams)."""
    rbsp = _unescape(sps)
    r = _Bits(rbsp)
    w = _BitWriter()
    w.u(8, r.u(8))  # NAL header
    profile = r.u(8)
    w.u(8, profile)
    w.u(16, r.u(16))  # constraint flags, level
    w.ue(r.ue())  # seq_parameter_set_id
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma = r.ue()
        w.ue(chroma)
        if chroma == 3:
            w.u(1, r.u(1))
        w.ue(r.ue())
        w.ue(r.ue())
        w.u(1, r.u(1))
        if r.u(1):
            raise ValueError("scaling matrices are not supported")
        w.u(1, 0)
    w.ue(r.ue())  # log2_max_frame_num_minus4
    poc_type = r.ue()
    w.ue(poc_type)
    if poc_type == 0:
        w.ue(r.ue())
    elif poc_type == 1:
        raise ValueError("pic_order_cnt_type 1 is not supported")
    w.ue(r.ue())  # max_num_ref_frames
    w.u(1, r.u(1))  # gaps_in_frame_num_value_allowed_flag
    r.ue()
    r.ue()
    w.ue(width_mbs - 1)
    w.ue(height_mbs - 1)
    total = len(rbsp) * 8
    # Copy the remaining bits up to (not including) the RBSP trailing bits.
    last_one = total - 1
    while (rbsp[last_one // 8] >> (7 - last_one % 8)) & 1 == 0:
        last_one -= 1
    while r.pos < last_one:
        w.u(1, r.u(1))
    w.u(1, 1)
    return _escape(w.tobytes())


def _patch_sps(data: bytes, width: int, height: int) -> bytes:
    offset, _ = _find_box(data, b"avcC")
    config = offset + 8
    sps_len = struct.unpack(">H", data[config + 6 : config + 8])[0]
    sps = data[config + 8 : config + 8 + sps_len]
    new = rewrite_sps(sps, (width + 15) // 16, (height + 15) // 16)
    patched = _resize_box_content(data, config + 6, 2 + sps_len, struct.pack(">H", len(new)) + new)
    return patched


def video_bombs(corpus: Corpus, videos: dict[str, bytes]) -> None:
    mp4 = videos["h264.mp4"]
    add = corpus.add
    tkhd, _ = _find_box(mp4, b"tkhd")
    add(
        "video-bomb",
        "tkhd-65535.mp4",
        _patch(mp4, tkhd + 84, ">II", 65535 << 16, 65535 << 16),
        "either",
    )
    avc1, _ = _find_box(mp4, b"avc1")
    add("video-bomb", "avc1-65535.mp4", _patch(mp4, avc1 + 32, ">HH", 65535, 65535), "either")
    add(
        "video-bomb", "sps-30000x30000.mp4", _patch_sps(mp4, 30000, 30000), "error", error_types=BAD
    )
    add(
        "video-bomb", "sps-16384x16384.mp4", _patch_sps(mp4, 16384, 16384), "error", error_types=BAD
    )
    # All three size fields at once, consistently.
    both = _patch(_patch_sps(mp4, 20000, 20000), tkhd + 84, ">II", 20000 << 16, 20000 << 16)
    add("video-bomb", "all-20000.mp4", both, "error", error_types=BAD)
    mvhd, _ = _find_box(mp4, b"mvhd")
    add(
        "video-bomb",
        "mvhd-duration-max.mp4",
        _patch(mp4, mvhd + 20, ">II", 1, 0xFFFFFFFF),
        "either",
    )
    mdhd, _ = _find_box(mp4, b"mdhd")
    add(
        "video-bomb",
        "mdhd-duration-max.mp4",
        _patch(mp4, mdhd + 20, ">II", 1, 0xFFFFFFFF),
        "either",
    )
    stts, _ = _find_box(mp4, b"stts")
    add(
        "video-bomb",
        "stts-2e31-samples.mp4",
        _patch(mp4, stts + 16, ">II", 0x7FFFFFFF, 1),
        "either",
    )
    add(
        "video-bomb", "stts-huge-delta.mp4", _patch(mp4, stts + 16, ">II", 12, 0x7FFFFFFF), "either"
    )
    stsz, _ = _find_box(mp4, b"stsz")
    add("video-bomb", "stsz-count-max.mp4", _patch(mp4, stsz + 16, ">I", 0xFFFFFFFF), "either")
    add("video-bomb", "stsz-fixed-1g.mp4", _patch(mp4, stsz + 12, ">I", 1 << 30), "either")


def mp4_atoms(corpus: Corpus, videos: dict[str, bytes]) -> None:
    mp4 = videos["h264.mp4"]
    add = corpus.add
    for kind in (b"moov", b"trak", b"stbl", b"stsd", b"avc1", b"avcC", b"mdat"):
        offset, size = _find_box(mp4, kind)
        name = kind.decode().strip()
        add("mp4-atoms", f"{name}-size0.mp4", _patch(mp4, offset, ">I", 0), "either")
        add(
            "mp4-atoms",
            f"{name}-size1-huge.mp4",
            mp4[:offset] + struct.pack(">I4sQ", 1, kind, 0xFFFFFFFFFFFFFFF0) + mp4[offset + 8 :],
            "either",
        )
        add("mp4-atoms", f"{name}-size-max.mp4", _patch(mp4, offset, ">I", 0xFFFFFFFF), "either")
        add("mp4-atoms", f"{name}-size-7.mp4", _patch(mp4, offset, ">I", 7), "either")
        add("mp4-atoms", f"{name}-size-plus1.mp4", _patch(mp4, offset, ">I", size + 1), "either")
    # A trak that contains a copy of itself, nested 2000 deep (recursion bomb).
    trak, trak_size = _find_box(mp4, b"trak")
    body = mp4[trak + 8 : trak + trak_size]
    nested = body
    for _ in range(2000):
        nested = struct.pack(">I4s", len(nested) + 8, b"trak") + nested
    moov, _ = _find_box(mp4, b"moov")
    loop = _resize_box_content(mp4, trak + 8, trak_size - 8, nested)
    add("mp4-atoms", "trak-nested-2000.mp4", loop, "either")
    del moov
    stco, _ = _find_box(mp4, b"stco")
    add("mp4-atoms", "stco-offset-past-eof.mp4", _patch(mp4, stco + 16, ">I", 0x7FFFFFF0), "either")
    add("mp4-atoms", "stco-offset-zero.mp4", _patch(mp4, stco + 16, ">I", 0), "either")
    add("mp4-atoms", "stco-count-max.mp4", _patch(mp4, stco + 12, ">I", 0xFFFFFFFF), "either")
    stsc, _ = _find_box(mp4, b"stsc")
    add("mp4-atoms", "stsc-count-max.mp4", _patch(mp4, stsc + 12, ">I", 0xFFFFFFFF), "either")
    add("mp4-atoms", "ftyp-only.mp4", mp4[:32], "either")
    add("mp4-atoms", "moov-only.mp4", mp4[:32] + mp4[moov_start(mp4) :], "either")
    add("mp4-atoms", "mdat-only.mp4", mp4[:32] + mp4[40 : moov_start(mp4)], "either")
    # 10 000 empty free boxes before the moov.
    add(
        "mp4-atoms",
        "free-10000.mp4",
        mp4[:32] + b"\x00\x00\x00\x08free" * 10000 + mp4[32:],
        "either",
    )
    # Also the WebM seeds with their EBML sizes set to "unknown" and to the maximum.
    webm = videos["vp8.webm"]
    add(
        "mp4-atoms",
        "webm-segment-size-max.webm",
        webm.replace(b"\x18\x53\x80\x67", b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xfe", 1),
        "either",
    )


def moov_start(data: bytes) -> int:
    return _find_box(data, b"moov")[0]


# ----------------------------------------------------------------------------- animations


def animations(corpus: Corpus) -> None:
    from PIL import Image

    add = corpus.add
    # Loops forever, 5000 frames of 2 x 2 at 20 ms: 100 s of animation from a few KB.
    add("animation", "gif-loop-5000-frames.gif", _gif((2, 2), (2, 2), frames=5000), "either")
    # More frames than max_frames (10 000 by default).
    add("animation", "gif-12000-frames.gif", _gif((2, 2), (1, 1), frames=12000), "either")
    # Canvas of 4000 x 4000 (16 M pixels) under 3000 tiny frames: compositing is the cost.
    add(
        "animation",
        "gif-4000-canvas-3000-frames.gif",
        _gif((4000, 4000), (1, 1), frames=3000),
        "either",
    )
    # Zero delays (browsers show 0.1 s), and the maximum delay (655 s per frame).
    add("animation", "gif-zero-delay.gif", _gif((8, 8), (8, 8), frames=200, delay=0), "either")
    add("animation", "gif-max-delay.gif", _gif((8, 8), (8, 8), frames=50, delay=0xFFFF), "either")
    # APNG whose acTL claims 2^31 frames but holds 2.
    frames = [Image.fromarray(fuzzlib._pattern(16, 16, seed=i)) for i in range(2)]
    apng = bytearray(_save(frames[0], "PNG", save_all=True, append_images=frames[1:]))
    at = apng.index(b"acTL")
    apng[at + 4 : at + 8] = struct.pack(">I", 0x7FFFFFFF)
    apng[at + 12 : at + 16] = struct.pack(">I", zlib.crc32(bytes(apng[at : at + 12])))
    add("animation", "apng-claims-2e31-frames.png", bytes(apng), "either")
    webp = _save(frames[0], "WEBP", save_all=True, append_images=frames[1:] * 300, duration=1)
    add("animation", "webp-600-frames-1ms.webp", webp, "either")


# ----------------------------------------------------------------------------- the rest


def polyglots(corpus: Corpus) -> None:
    import zipfile

    add = corpus.add
    jpeg = _save(_photo(), "JPEG", quality=90)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("payload.js", "alert(1)\n" * 100)
    add("polyglot", "jpeg-plus-zip.jpg", jpeg + zbuf.getvalue(), "hash", media_type="image/jpeg")
    # GIF header that is also valid JavaScript (GIF89a=... ; the "width" bytes are "/*").
    gif_js = bytearray(_gif((8, 8), (8, 8)))
    gif_js[6:8] = b"/*"
    gif_js = gif_js[:-1] + b"*/=1;alert(document.domain);\x3b"
    add("polyglot", "gif-js.gif", bytes(gif_js), "either")
    png = _save(_photo(), "PNG")
    add(
        "polyglot",
        "png-plus-html.png",
        png + b"<html><script>alert(1)</script></html>",
        "hash",
        media_type="image/png",
    )
    add(
        "polyglot",
        "zip-plus-jpeg.zip",
        zbuf.getvalue() + jpeg,
        "bytes",  # a ZIP to every reader that goes by magic bytes: exact hashes only
        media_type="application/zip",
    )
    add(
        "polyglot",
        "html-with-jpeg-magic.html",
        b"\xff\xd8\xff<html>" + b"A" * 2000,
        "error",
        error_types=BAD,
    )


def lying_extensions(corpus: Corpus, videos: dict[str, bytes]) -> None:
    photo = _photo()
    sources = {
        "jpeg": (_save(photo, "JPEG"), ".png"),
        "png": (_save(photo, "PNG"), ".jpg"),
        "gif": (_save(photo.convert("P"), "GIF"), ".webp"),
        "webp": (_save(photo, "WEBP"), ".gif"),
        "mp4": (videos["h264.mp4"], ".jpg"),
        "webm": (videos["vp8.webm"], ".mp4"),
    }
    for kind, (data, wrong) in sources.items():
        truthful = f"lying-ext--{kind}-truthful.{kind}"
        corpus.add("lying-ext", f"{kind}-truthful.{kind}", data, "hash")
        corpus.add("lying-ext", f"{kind}-as{wrong}", data, "hash", same_as=truthful)
        corpus.add("lying-ext", f"{kind}-as.txt", data, "hash", same_as=truthful)


def tiny(corpus: Corpus) -> None:
    from PIL import Image

    add = corpus.add
    add("tiny", "empty.jpg", b"", "bytes", media_type="application/octet-stream")
    add("tiny", "one-byte.png", b"\x89", "bytes", media_type="application/octet-stream")
    add("tiny", "magic-only.jpg", b"\xff\xd8\xff", "error", error_types=BAD)
    add("tiny", "magic-only.png", b"\x89PNG\r\n\x1a\n", "error", error_types=BAD)
    add("tiny", "magic-only.gif", b"GIF89a", "error", error_types=BAD)
    add(
        "tiny",
        "magic-only.mp4",
        b"\x00\x00\x00\x14ftypisom\x00\x00\x02\x00isom",
        "error",
        error_types=BAD,
    )
    pixel = Image.new("RGB", (1, 1), (200, 10, 10))
    for fmt, ext in (
        ("JPEG", "jpg"),
        ("PNG", "png"),
        ("GIF", "gif"),
        ("WEBP", "webp"),
        ("TIFF", "tif"),
        ("BMP", "bmp"),
    ):
        add("tiny", f"1x1.{ext}", _save(pixel, fmt), "hash")
    add("tiny", "1x5000.png", _save(Image.new("L", (1, 5000), 128), "PNG"), "hash")
    add("tiny", "5000x1.png", _save(Image.new("L", (5000, 1), 128), "PNG"), "hash")


def modes(corpus: Corpus) -> None:
    import numpy as np

    photo = _photo()
    add = corpus.add
    variants: dict[str, tuple[Callable[[], bytes], Any]] = {
        "cmyk.jpg": (lambda: _save(photo.convert("CMYK"), "JPEG", quality=95), None),
        "ycck-adobe.jpg": (lambda: _save(photo.convert("CMYK"), "JPEG", quality=95), None),
        "gray.jpg": (lambda: _save(photo.convert("L"), "JPEG", quality=95), None),
        "gray16.png": (lambda: _save(photo.convert("L").convert("I;16"), "PNG"), None),
        "rgb48.tif": (lambda: _rgb48_tiff(np.asarray(photo)), None),
        "palette.png": (lambda: _save(photo.convert("P"), "PNG"), None),
        "palette-alpha.png": (lambda: _save(photo.convert("RGBA").convert("P"), "PNG"), None),
        "rgba.png": (lambda: _save(photo.convert("RGBA"), "PNG"), None),
        "la.png": (lambda: _save(photo.convert("LA"), "PNG"), None),
        "bilevel.png": (lambda: _save(photo.convert("1"), "PNG"), None),
        "cmyk.tif": (lambda: _save(photo.convert("CMYK"), "TIFF"), None),
        "float.tif": (lambda: _save(photo.convert("F"), "TIFF"), None),
        "int32.tif": (lambda: _save(photo.convert("I"), "TIFF"), None),
        "rgba.webp": (lambda: _save(photo.convert("RGBA"), "WEBP", lossless=True), None),
        "palette.bmp": (lambda: _save(photo.convert("P"), "BMP"), None),
        "rgba.tif": (lambda: _save(photo.convert("RGBA"), "TIFF"), None),
    }
    for name, (make, _) in variants.items():
        add("modes", name, make(), "hash", pdq_reference=True)


def _rgb48_tiff(rgb: Any) -> bytes:
    """16-bit-per-channel RGB TIFF written by hand (Pillow cannot write it)."""
    import numpy as np

    height, width, _ = rgb.shape
    pixels = (rgb.astype(np.uint16) * 257).astype("<u2").tobytes()
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, 0),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, 0),
        (277, 3, 1, 3),
        (278, 4, 1, height),
        (279, 4, 1, len(pixels)),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_offset = 8 + ifd_size
    data_offset = bits_offset + 6
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 258:
            value = bits_offset
        if tag == 273:
            value = data_offset
        packed = (
            struct.pack("<H", value) + b"\x00\x00"
            if kind == 3 and count == 1
            else struct.pack("<I", value)
        )
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += b"\x00\x00\x00\x00"
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<HHH", 16, 16, 16) + pixels


def exif(corpus: Corpus) -> None:
    import random

    rng = random.Random(5)
    photo = _photo()
    add = corpus.add

    def with_app1(payload: bytes) -> bytes:
        jpeg = _save(photo, "JPEG", quality=90)
        segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
        return jpeg[:2] + segment + jpeg[2:]

    add(
        "exif",
        "random-bytes.jpg",
        with_app1(b"Exif\x00\x00" + rng.randbytes(3000)),
        "hash",
        pdq_reference=True,
    )
    add(
        "exif",
        "truncated-ifd.jpg",
        with_app1(b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff"),
        "hash",
        pdq_reference=True,
    )
    # IFD0's next-IFD offset points back at itself: a parser that follows it loops forever.
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<I", 8)
    add("exif", "ifd-loop.jpg", with_app1(b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + ifd), "hash")
    # Orientation values outside 1..8, and a count that claims 2^30 entries.
    for value in (0, 9, 0xFFFF):
        ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, value) + b"\0\0\0\0"
        add(
            "exif",
            f"orientation-{value}.jpg",
            with_app1(b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + ifd),
            "hash",
        )
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x010F, 2, 1 << 30, 26) + b"\0\0\0\0"
    add("exif", "count-2e30.jpg", with_app1(b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + ifd), "hash")
    ifd = struct.pack("<H", 0xFFFF) + b"\x00" * 64
    add(
        "exif", "entries-65535.jpg", with_app1(b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + ifd), "hash"
    )
    # The same garbage in a PNG eXIf chunk and a WebP EXIF chunk.
    png = _save(photo, "PNG")
    garbage = b"MM\x00*\x00\x00\x00\x08" + rng.randbytes(500)
    png_exif = png[:33] + _png_chunk(b"eXIf", garbage) + png[33:]
    add("exif", "png-garbage-exif.png", png_exif, "hash")
    add("exif", "webp-garbage-exif.webp", _save(photo, "WEBP", exif=garbage), "hash")
    add("exif", "tiff-garbage-exif.tif", _save(photo, "TIFF", exif=garbage), "either")


# ----------------------------------------------------------------------------- main


def real_seeds(data_dir: Path) -> dict[str, bytes]:
    """Small real files from the extended corpus (``--data-dir``), to be cut like the rest."""
    return {
        "real-" + Path(rel).name: (data_dir / rel).read_bytes()
        for rel in fuzzlib.REAL_IMAGE_SEEDS[:2] + fuzzlib.REAL_VIDEO_SEEDS
    }


def build(out: Path, data_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Write the whole corpus into ``out``; returns the manifest."""
    corpus = Corpus(out)
    images = fuzzlib.generated_image_seeds()
    videos = fuzzlib.generated_video_seeds()
    bundled = fuzzlib.FIXTURE_IMAGE_SEEDS[:2] + fuzzlib.FIXTURE_VIDEO_SEEDS
    fixtures = {"fixture-" + name: (fuzzlib.FIXTURES / name).read_bytes() for name in bundled}
    real = real_seeds(data_dir) if data_dir is not None else {}
    truncated(corpus, {**images, **videos, **fixtures, **real})
    bombs(corpus)
    video_bombs(corpus, videos)
    mp4_atoms(corpus, videos)
    animations(corpus)
    polyglots(corpus)
    lying_extensions(corpus, videos)
    tiny(corpus)
    modes(corpus)
    exif(corpus)
    corpus.write_manifest()
    return corpus.manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None, help="the extended test corpus")
    args = parser.parse_args()
    manifest = build(args.out, args.data_dir)
    total = sum((args.out / name).stat().st_size for name in manifest)
    print(f"{len(manifest)} files, {total / 1e6:.1f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
