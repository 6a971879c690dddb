"""The local features of one image, and the compact record they are stored and queried as.

A ``Features`` holds up to ``N_FEATURES`` SIFT keypoints (position, scale, orientation) and
their 128-byte descriptors, computed on a copy of the image whose long side is ``WORK_SIZE``
pixels (``_sift_describe``). Two derived forms serve the matcher:

- ``rootsift()``: Hellinger-normalised descriptors, compared by inner product;
- ``mirror()``: the features of the left-right mirrored image, obtained by permuting the
  descriptor bins rather than describing a flipped copy. A listed photo is stored once and a
  mirrored upload costs no second detection.

``to_bytes``/``from_bytes`` are the record (``LFS1``) that the store keeps and the ``sift``
hash type's value encodes: a 12-byte header, then per keypoint x, y (uint16, 1/16 px), size
(float16), angle (uint16) and the descriptor, 136 bytes a keypoint. The parser takes its input
as hostile: every length and value is checked before use and anything malformed raises
``FeatureRecordError``; it never allocates more than the record's own size.

Only numpy here: OpenCV is loaded by the modules that describe and verify.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .._errors import FeatureRecordError

__all__ = [
    "DIM",
    "MAX_FEATURES",
    "N_FEATURES",
    "WORK_SIZE",
    "Features",
    "rootsift",
]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

#: Long side, in pixels, of the copy features are computed on. Larger images are shrunk to it
#: and smaller ones enlarged, so a copy of a listed image at any resolution is described at the
#: listed image's scale (and the RANSAC tolerance means the same everywhere). Measured
#: (bench_detection.py --goals): 512 px keeps every goal edit of every listable photo; 448 px
#: lost one photo's 60% screenshots on a canvas, 384 and 320 px also its 20% crops and
#: web-page screenshots, though 320 px halves the describe time (SIFT's pyramid starts at
#: twice this size).
WORK_SIZE = 512
#: Keypoints kept per image, the strongest by SIFT response.
N_FEATURES = 500
#: SIFT descriptor width.
DIM = 128
#: Upper bounds the parser enforces (hostile bytes never allocate more).
MAX_FEATURES = 4096
MAX_SIDE = 4096

_MAGIC = b"LFS1"
_HEADER = struct.Struct("<4sBBHHH")  # magic, version, flags, n, width, height
_VERSION = 1
_FLAG_MIRRORED = 1
_PER_KEYPOINT = 4 + 2 + 2 + DIM
#: Stored positions are fixed point with this many steps per pixel (uint16: < 4096 px).
_XY_STEPS = 16
_ANGLE_STEPS = 65536 / 360.0

# The SIFT descriptor is a 4 x 4 grid of 8-bin orientation histograms in the keypoint's frame.
# Mirroring the image left-right flips that frame's second axis (grid rows) and negates the
# gradient angles (bin o -> -o mod 8); the keypoint angle becomes 180 - angle. Checked against
# OpenCV's SIFT on flipped photos (tests/test_sift.py).
MIRROR_PERMUTATION = np.array(
    [(3 - r) * 32 + c * 8 + (-o) % 8 for r in range(4) for c in range(4) for o in range(8)],
    dtype=np.intp,
)


def rootsift(desc: U8) -> F32:
    """L1-normalise, then square-root: the Hellinger kernel on histograms as unit vectors, so
    the largest inner product is the most similar histogram (better than SIFT's raw L2)."""
    d = desc.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), np.float32(1e-7))
    out: F32 = np.sqrt(d)
    return out


@dataclass(frozen=True, eq=False)
class Features:
    """Keypoints and SIFT descriptors of one image at its working size.

    ``xy`` is in pixels of the working copy (``width`` x ``height``, long side ``WORK_SIZE``),
    ``size`` the keypoint diameter in the same pixels, ``angle`` its orientation in degrees
    (OpenCV's convention), ``desc`` the uint8 descriptors. ``mirrored``: these are the
    features of the left-right mirror of the described image.
    """

    width: int
    height: int
    xy: F32
    size: F32
    angle: F32
    desc: U8
    mirrored: bool = False
    _root: list[F32] = field(default_factory=list, repr=False, compare=False)
    _mirror: list[Features] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def rootsift(self) -> F32:
        """RootSIFT descriptors (cached: a query's are used by the shortlist and by every
        candidate's verification)."""
        if not self._root:
            self._root.append(rootsift(self.desc))
        return self._root[0]

    def mirror(self) -> Features:
        """The features of the left-right mirrored image, by permutation (no re-detection).
        Cached: a query's mirror is verified against every candidate."""
        if not self._mirror:
            self._mirror.append(self._mirrored())
        return self._mirror[0]

    def _mirrored(self) -> Features:
        xy = self.xy.copy()
        # OpenCV's SIFT places keypoints a quarter pixel off the pixel-centre grid (it works on
        # a doubled image), so the mirror of x is width - 0.5 - x, measured on flipped images.
        xy[:, 0] = np.float32(self.width - 0.5) - xy[:, 0]
        angle = np.mod(180.0 - self.angle, 360.0).astype(np.float32)
        desc = np.ascontiguousarray(self.desc[:, MIRROR_PERMUTATION])
        return Features(
            self.width, self.height, xy, self.size.copy(), angle, desc, not self.mirrored
        )

    # ------------------------------------------------------------------ the record

    def to_bytes(self) -> bytes:
        """The ``LFS1`` record (see the module docstring); the mirror is never stored."""
        n = len(self)
        if n > MAX_FEATURES or not (0 < self.width <= MAX_SIDE and 0 < self.height <= MAX_SIDE):
            raise FeatureRecordError(
                f"{n} keypoints on {self.width}x{self.height} is outside the storable range"
            )
        header = _HEADER.pack(
            _MAGIC, _VERSION, _FLAG_MIRRORED if self.mirrored else 0, n, self.width, self.height
        )
        xy = np.clip(np.rint(self.xy * _XY_STEPS), 0, 65535).astype("<u2")
        size = self.size.astype("<f2")
        angle = np.rint(np.mod(self.angle, 360.0) * _ANGLE_STEPS).astype(np.int64) % 65536
        return b"".join(
            [
                header,
                xy.tobytes(),
                size.tobytes(),
                angle.astype("<u2").tobytes(),
                np.ascontiguousarray(self.desc, dtype=np.uint8).tobytes(),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        """Parse an ``LFS1`` record; ``FeatureRecordError`` for anything malformed."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise FeatureRecordError(f"a feature record is bytes, got {type(data).__name__}")
        raw = bytes(data)
        if len(raw) < _HEADER.size:
            raise FeatureRecordError(f"feature record of {len(raw)} bytes is too short")
        magic, version, flags, n, width, height = _HEADER.unpack_from(raw)
        if magic != _MAGIC or version != _VERSION:
            raise FeatureRecordError("not a feature record of a known version (LFS1 v1)")
        if flags & ~_FLAG_MIRRORED:
            raise FeatureRecordError(f"unknown flags {flags:#x} in feature record")
        if n > MAX_FEATURES or not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise FeatureRecordError(
                f"feature record claims {n} keypoints on {width}x{height}: out of range"
            )
        expected = _HEADER.size + n * _PER_KEYPOINT
        if len(raw) != expected:
            raise FeatureRecordError(
                f"feature record of {n} keypoints must be {expected} bytes, got {len(raw)}"
            )
        at = _HEADER.size
        xy = np.frombuffer(raw, "<u2", 2 * n, at).reshape(n, 2).astype(np.float32)
        xy /= np.float32(_XY_STEPS)
        at += 4 * n
        size = np.frombuffer(raw, "<f2", n, at).astype(np.float32)
        at += 2 * n
        angle = np.frombuffer(raw, "<u2", n, at).astype(np.float32) / np.float32(_ANGLE_STEPS)
        at += 2 * n
        desc = np.frombuffer(raw, np.uint8, n * DIM, at).reshape(n, DIM).copy()
        if n and (
            not np.all(np.isfinite(size))
            or float(size.min()) <= 0.0
            or float(size.max()) > 4.0 * MAX_SIDE
            or float(xy[:, 0].max()) > width + 1.0
            or float(xy[:, 1].max()) > height + 1.0
        ):
            raise FeatureRecordError("feature record holds keypoints outside its image")
        return cls(width, height, xy, size, angle, desc, bool(flags & _FLAG_MIRRORED))


def empty_features(width: int, height: int) -> Features:
    """No keypoints (a flat image): valid, matches nothing."""
    nothing = np.zeros((0,), np.float32)
    return Features(
        width,
        height,
        np.zeros((0, 2), np.float32),
        nothing,
        nothing.copy(),
        np.zeros((0, DIM), np.uint8),
    )
