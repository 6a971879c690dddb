"""TMK+PDQF values: the reference ``.tmk`` file layout and ThreatExchange's ``HASH_TMK`` text.

TMK+PDQF is the GIFCT hash-sharing database's video hash. A value is a fixed set of float
vectors built from per-frame PDQ float features (PDQF, 256 dimensions): their plain average
("level 1", scored by cosine) and, for four periods T and 32 Fourier harmonics j, the
per-frame features weighted by cos/sin(2 pi j t / T) over the 15 fps frame index t ("level 2",
the temporal match kernel). Hashes are only comparable when they were made the same way, so
the layout is that of facebook/ThreatExchange ``tmk/cpp`` (``tmkio.cpp``) byte for byte:

- a 32-byte little-endian header: the magics ``TMK1``, ``FVEC``, ``PDQF``, then int32 frames
  per second, number of periods P, number of Fourier coefficients C, feature dimension D and
  the number of 15 fps frames hashed (informational);
- int32 periods, float32 coefficients, then float32 pure average (D), cosine features
  (P x C x D) and sine features (P x C x D).

A reference file (P=4, C=32, D=256) is 263,344 bytes. ThreatExchange string fields are not
8-bit clean, so an indicator carries it as the first 12 bytes (the three ASCII magics), a
``|``, then standard base64 of the rest: the form ThreatExchange's Java reference client
writes (``te-tag-query`` ``Utils.readTMKHashFromFile``), 351,125 characters for a reference
file. That text is uploadscan's canonical TMK value. List files that carry a value in a
column of their own (CSV, JSON lines) may instead hold standard base64 of the whole file
(``base64 -w0 video.tmk``); ``decode_value`` takes either form.

Parsing is for untrusted input: the header's counts are bounded and the exact size they
imply is checked before any array is read, so a header claiming gigabytes costs nothing,
and every float must be finite. Everything is refused with ``InvalidHashError``.

Mirroring lives here too because it is algebra on a value, not on pixels: see
``transform_hash``.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import InvalidHashError

__all__ = [
    "FEATURE_DIMENSION",
    "FOURIER_COEFFICIENTS",
    "FRAMES_PER_SECOND",
    "MAX_TMK_BYTES",
    "PERIODS",
    "REFERENCE_TMK_BYTES",
    "TmkHash",
    "decode_text",
    "decode_value",
    "encode_text",
    "mirror_hash",
    "parse_text",
    "parse_tmk",
    "pure_average_of",
    "transform_hash",
]

F32 = npt.NDArray[np.float32]

PROJECT_MAGIC = b"TMK1"
FILE_TYPE_MAGIC = b"FVEC"
PDQF_MAGIC = b"PDQF"
#: Output frame rate of the reference hasher (``ffmpeg -r 15``); also the unit of offsets.
FRAMES_PER_SECOND = 15
#: Poullot et al.'s periods, in 15 fps frames (3 to 16 minutes); all four are prime.
PERIODS: tuple[int, ...] = (2731, 4391, 9767, 14653)
#: Poullot's weights a_j (modified Bessel functions, beta = 32), as the reference tabulates
#: them. Every file stores them, so these exact float32 values are part of the format.
FOURIER_COEFFICIENTS: F32 = np.array(
    [
        0.0708041893112, 0.13937789309, 0.132897260304, 0.122765735552,
        0.109878684888, 0.09529606433, 0.0800986647852, 0.0652590650356,
        0.0515478238322, 0.0394851531195, 0.0293374252025, 0.0211492623679,
        0.0147973073245, 0.0100512818746, 0.0066306408014, 0.00424947117334,
        0.0026467615764, 0.00160270959695, 0.000943882629639, 0.000540841638603,
        0.000301633183798, 0.000163800158855, 8.66454753015e-05, 4.46626303151e-05,
        2.24429442235e-05, 1.09982139799e-05, 5.25823487999e-06, 2.45358229988e-06,
        1.11781474895e-06, 4.97406489221e-07, 2.16265487234e-07, 9.19087006565e-08,
    ],
    dtype=np.float32,
)  # fmt: skip
FOURIER_COEFFICIENTS.setflags(write=False)
#: PDQF: the 16x16 low-frequency DCT block of a 64x64 frame, row-major (vertical frequency
#: major). The only frame feature the reference hashes videos with.
FEATURE_DIMENSION = 256

_HEADER = struct.Struct("<4s4s4siiiii")
_INT32_MAX = 2**31 - 1

# Bounds for hostile files. The format is generic in P, C and the periods; these keep any
# parseable file under a few MB and any score under a second.
MAX_PERIODS = 16
MAX_FOURIER_COEFFICIENTS = 64
MAX_PERIOD = 65536
MAX_FRAMES_PER_SECOND = 1000


def _file_size(periods: int, coefficients: int) -> int:
    vectors = FEATURE_DIMENSION * (1 + 2 * periods * coefficients)
    return _HEADER.size + 4 * (periods + coefficients) + 4 * vectors


#: Largest file the parser accepts (bytes).
MAX_TMK_BYTES = _file_size(MAX_PERIODS, MAX_FOURIER_COEFFICIENTS)
#: Size of a reference file (P=4, C=32, D=256).
REFERENCE_TMK_BYTES = _file_size(len(PERIODS), len(FOURIER_COEFFICIENTS))
#: Offset of the pure-average feature in a reference file.
_PURE_OFFSET = _HEADER.size + 4 * (len(PERIODS) + len(FOURIER_COEFFICIENTS))

_TEXT_PREFIX = 12  # "TMK1FVECPDQF"
_MAX_TEXT_CHARS = _TEXT_PREFIX + 1 + 4 * ((MAX_TMK_BYTES - _TEXT_PREFIX + 2) // 3)
#: base64 of the 12 magic bytes: how base64 of a whole ``.tmk`` file starts (12 bytes are
#: whole base64 groups, so the prefix never depends on what follows).
_BASE64_PREFIX = base64.b64encode(PROJECT_MAGIC + FILE_TYPE_MAGIC + PDQF_MAGIC).decode()
_MAX_BASE64_CHARS = 4 * ((MAX_TMK_BYTES + 2) // 3)


def _frozen(values: npt.ArrayLike, shape: tuple[int, ...], what: str) -> F32:
    array = np.array(values, dtype=np.float32)  # a private copy, whatever was passed
    if array.shape != shape:
        raise InvalidHashError(f"TMK {what} has shape {array.shape}, expected {shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidHashError(f"TMK {what} contains NaN or infinity")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class TmkHash:
    """One TMK+PDQF value: the fields of a ``.tmk`` file.

    Arrays are read-only float32, so a value can be shared between threads. Two values are
    equal when their files are byte-identical.
    """

    frames_per_second: int
    periods: tuple[int, ...]
    fourier_coefficients: F32  # (C,)
    frame_count: int  # 15 fps frames hashed; informational, never scored
    pure_average: F32  # (D,)
    cos_features: F32  # (P, C, D)
    sin_features: F32  # (P, C, D)

    def __post_init__(self) -> None:
        if not 1 <= self.frames_per_second <= MAX_FRAMES_PER_SECOND:
            raise InvalidHashError(f"TMK frames per second {self.frames_per_second} out of range")
        if not 0 <= self.frame_count <= _INT32_MAX:
            raise InvalidHashError(f"TMK frame count {self.frame_count} out of range")
        periods = tuple(int(p) for p in self.periods)
        if len(periods) > MAX_PERIODS or any(not 1 <= p <= MAX_PERIOD for p in periods):
            raise InvalidHashError(f"TMK periods {periods[: MAX_PERIODS + 1]} out of range")
        coefficients = np.asarray(self.fourier_coefficients)
        if coefficients.ndim != 1 or len(coefficients) > MAX_FOURIER_COEFFICIENTS:
            raise InvalidHashError(f"TMK Fourier coefficients have shape {coefficients.shape}")
        p, c, d = len(periods), len(coefficients), FEATURE_DIMENSION
        object.__setattr__(self, "periods", periods)
        shapes = {
            "fourier_coefficients": (c,),
            "pure_average": (d,),
            "cos_features": (p, c, d),
            "sin_features": (p, c, d),
        }
        for name, shape in shapes.items():
            object.__setattr__(self, name, _frozen(getattr(self, name), shape, name))
        if np.any(self.fourier_coefficients < 0):
            raise InvalidHashError("TMK Fourier coefficients must not be negative")

    @property
    def duration_seconds(self) -> float:
        """Length of the hashed video implied by the frame count."""
        return self.frame_count / self.frames_per_second

    def is_reference_compatible(self) -> bool:
        """True when made with ``tmk-hash-video``'s parameters, so it scores against ours."""
        return (
            self.frames_per_second == FRAMES_PER_SECOND
            and self.periods == PERIODS
            and self.fourier_coefficients.tobytes() == FOURIER_COEFFICIENTS.tobytes()
        )

    def to_bytes(self) -> bytes:
        """The ``.tmk`` file."""
        return self._file

    def to_text(self) -> str:
        """The ``HASH_TMK`` indicator text (uploadscan's canonical value)."""
        return encode_text(self._file)

    @cached_property
    def _file(self) -> bytes:
        # cached_property writes the instance __dict__, which a frozen dataclass allows; the
        # fields it reads never change.
        header = _HEADER.pack(
            PROJECT_MAGIC,
            FILE_TYPE_MAGIC,
            PDQF_MAGIC,
            self.frames_per_second,
            len(self.periods),
            len(self.fourier_coefficients),
            FEATURE_DIMENSION,
            self.frame_count,
        )
        return b"".join(
            [
                header,
                np.asarray(self.periods, dtype="<i4").tobytes(),
                self.fourier_coefficients.astype("<f4").tobytes(),
                self.pure_average.astype("<f4").tobytes(),
                self.cos_features.astype("<f4").tobytes(),
                self.sin_features.astype("<f4").tobytes(),
            ]
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TmkHash):
            return NotImplemented
        return self._file == other._file

    def __hash__(self) -> int:
        return hash(self._file)


def _header(view: memoryview) -> tuple[int, int, int, int]:
    """(frames per second, P, C, frame count) of a checked header; the exact size too."""
    if len(view) < _HEADER.size:
        raise InvalidHashError(f"TMK data is {len(view)} bytes; the header alone is 32")
    magic, file_type, algorithm, fps, periods, coefficients, dim, count = _HEADER.unpack_from(
        view, 0
    )
    if magic != PROJECT_MAGIC or file_type != FILE_TYPE_MAGIC:
        raise InvalidHashError(
            f"not a TMK feature-vector file (magic {bytes(magic + file_type)!r})"
        )
    if algorithm != PDQF_MAGIC:
        raise InvalidHashError(f"unsupported TMK frame feature algorithm {bytes(algorithm)!r}")
    if not 1 <= fps <= MAX_FRAMES_PER_SECOND:
        raise InvalidHashError(f"TMK frames per second {fps} out of range")
    if not 0 <= periods <= MAX_PERIODS:
        raise InvalidHashError(f"TMK period count {periods} out of range 0..{MAX_PERIODS}")
    if not 0 <= coefficients <= MAX_FOURIER_COEFFICIENTS:
        raise InvalidHashError(
            f"TMK Fourier coefficient count {coefficients} out of range "
            f"0..{MAX_FOURIER_COEFFICIENTS}"
        )
    if dim != FEATURE_DIMENSION:
        raise InvalidHashError(f"TMK feature dimension {dim}; PDQF has {FEATURE_DIMENSION}")
    if count < 0:
        raise InvalidHashError(f"negative TMK frame count {count}")
    expected = _file_size(periods, coefficients)
    if len(view) != expected:
        raise InvalidHashError(
            f"TMK data is {len(view)} bytes; its header (P={periods}, C={coefficients}) "
            f"implies {expected}"
        )
    return fps, periods, coefficients, count


def parse_tmk(data: bytes | bytearray | memoryview) -> TmkHash:
    """A ``.tmk`` file's value, or ``InvalidHashError`` saying what is wrong with it."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidHashError(f"TMK data must be bytes, got {type(data).__name__}")
    view = memoryview(data).cast("B")
    fps, n_periods, n_coefficients, count = _header(view)
    offset = _HEADER.size

    def take(n: int, dtype: str) -> npt.NDArray[Any]:
        nonlocal offset
        array = np.frombuffer(view, dtype=dtype, count=n, offset=offset)
        offset += 4 * n
        return array

    periods = take(n_periods, "<i4")
    if np.any(periods < 1) or np.any(periods > MAX_PERIOD):
        raise InvalidHashError(f"TMK period out of range 1..{MAX_PERIOD}: {periods.tolist()}")
    coefficients = take(n_coefficients, "<f4")
    pure = take(FEATURE_DIMENSION, "<f4")
    shape = (n_periods, n_coefficients, FEATURE_DIMENSION)
    size = n_periods * n_coefficients * FEATURE_DIMENSION
    cos = take(size, "<f4").reshape(shape)
    sin = take(size, "<f4").reshape(shape)
    return TmkHash(
        frames_per_second=fps,
        periods=tuple(int(p) for p in periods),
        fourier_coefficients=coefficients,
        frame_count=count,
        pure_average=pure,
        cos_features=cos,
        sin_features=sin,
    )


def pure_average_of(data: bytes) -> F32:
    """The pure-average feature of a stored reference-layout file, without parsing the rest.

    For building level-1 indexes from values the store has already validated (reading the
    other 262 KB of each value would dominate an index build).
    """
    view = memoryview(data).cast("B")
    _, periods, coefficients, _ = _header(view)
    offset = _HEADER.size + 4 * (periods + coefficients)
    pure = np.frombuffer(view, dtype="<f4", count=FEATURE_DIMENSION, offset=offset)
    if not np.all(np.isfinite(pure)):
        raise InvalidHashError("TMK pure-average feature contains NaN or infinity")
    return pure.astype(np.float32)


def encode_text(data: bytes) -> str:
    """The ``HASH_TMK`` text of a ``.tmk`` file (see the module docstring)."""
    if (
        len(data) < _TEXT_PREFIX
        or data[:_TEXT_PREFIX] != PROJECT_MAGIC + FILE_TYPE_MAGIC + PDQF_MAGIC
    ):
        raise InvalidHashError("not a TMK+PDQF file: it must start with TMK1FVECPDQF")
    return (
        data[:_TEXT_PREFIX].decode("ascii") + "|" + base64.b64encode(data[_TEXT_PREFIX:]).decode()
    )


def decode_text(text: str) -> bytes:
    """The ``.tmk`` bytes of a ``HASH_TMK`` text (strict: bounded length, strict base64)."""
    if not isinstance(text, str):
        raise InvalidHashError(f"a TMK value must be a string, got {type(text).__name__}")
    if len(text) > _MAX_TEXT_CHARS:
        raise InvalidHashError(f"TMK text of {len(text)} characters is over {_MAX_TEXT_CHARS}")
    if len(text) < _TEXT_PREFIX + 1 or text[_TEXT_PREFIX] != "|":
        raise InvalidHashError(
            "a TMK value is 12 header characters (TMK1FVECPDQF), '|', then base64"
        )
    prefix = text[:_TEXT_PREFIX]
    if not prefix.isascii() or not prefix.isprintable():
        raise InvalidHashError("TMK text header is not printable ASCII")
    try:
        rest = base64.b64decode(text[_TEXT_PREFIX + 1 :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidHashError(f"TMK text payload is not valid base64 ({exc})") from None
    return prefix.encode("ascii") + rest


def decode_value(text: str) -> bytes:
    """The ``.tmk`` bytes of a TMK value in either form list files use: the ``HASH_TMK``
    text, or standard base64 of the whole file (told apart by its first 16 characters, the
    base64 of the three magics). Strict and bounded like ``decode_text``."""
    if not isinstance(text, str) or not text.startswith(_BASE64_PREFIX):
        return decode_text(text)
    if len(text) > _MAX_BASE64_CHARS:
        raise InvalidHashError(
            f"base64 TMK file of {len(text)} characters is over {_MAX_BASE64_CHARS}"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidHashError(f"base64 TMK file is not valid base64 ({exc})") from None


def parse_text(text: str) -> TmkHash:
    """A ``HASH_TMK`` text's value (``InvalidHashError`` for anything malformed)."""
    return parse_tmk(decode_text(text))


# ----------------------------------------------------------------------------- mirroring


def _signs(flip: bool) -> F32:
    # Under x -> 63 - x, PDQ's DCT basis function k (k = 1..16) picks up (-1)^k, so the
    # 0-based feature columns 0, 2, 4, ... (odd k) change sign.
    signs = np.ones(16, dtype=np.float32)
    if flip:
        signs[0::2] = -1.0
    return signs


def _transform(features: F32, flip_x: bool, flip_y: bool, transpose: bool) -> F32:
    blocks = features.reshape(*features.shape[:-1], 16, 16)
    blocks = blocks * _signs(flip_y)[:, None] * _signs(flip_x)[None, :]
    if transpose:
        blocks = np.swapaxes(blocks, -1, -2)
    out: F32 = np.ascontiguousarray(blocks.reshape(features.shape), dtype=np.float32)
    return out


def transform_hash(
    value: TmkHash, *, flip_x: bool = False, flip_y: bool = False, transpose: bool = False
) -> TmkHash:
    """The value of the same video with every frame mirrored or transposed, without decoding.

    Every TMK vector is a linear combination of per-frame PDQF blocks, and mirroring a frame
    left-right negates the DCT coefficients of the odd horizontal basis functions (up-down:
    the odd vertical ones; transposing the frame transposes the block). Per-frame L2
    normalisation is unchanged by sign flips and permutations, so this is exact up to how the
    scaler and the encoder treat the mirrored pixels (measured: >= 0.9999 against the
    reference's hash of an ``ffmpeg -vf hflip`` re-encode). ``transpose`` applies after the
    flips; a rotation is flips plus a transpose.
    """
    return TmkHash(
        frames_per_second=value.frames_per_second,
        periods=value.periods,
        fourier_coefficients=value.fourier_coefficients,
        frame_count=value.frame_count,
        pure_average=_transform(value.pure_average, flip_x, flip_y, transpose),
        cos_features=_transform(value.cos_features, flip_x, flip_y, transpose),
        sin_features=_transform(value.sin_features, flip_x, flip_y, transpose),
    )


def mirror_hash(value: TmkHash) -> TmkHash:
    """The value of the left-right mirrored video (``ffmpeg -vf hflip``)."""
    return transform_hash(value, flip_x=True)


#: The eight rotations and mirrors as (flip_x, flip_y, transpose), named like ffmpeg's
#: filters. The display matrix rotates counter-clockwise, so ``rotate90`` here is what a
#: ``rotate=270`` tag shows.
DIHEDRAL: Mapping[str, tuple[bool, bool, bool]] = {
    "original": (False, False, False),
    "hflip": (True, False, False),
    "vflip": (False, True, False),
    "rotate180": (True, True, False),
    "transpose": (False, False, True),
    "rotate90": (False, True, True),
    "rotate270": (True, False, True),
    "antitranspose": (True, True, True),
}
