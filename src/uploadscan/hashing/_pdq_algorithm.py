"""PDQ hashing: the reference algorithm, computed as two small matrix products.

PDQ (ThreatExchange ``pdq/cpp/hashing/pdqhashing.cpp``) turns an image into luma
(0.299 R + 0.587 G + 0.114 B), blurs it with a Jarosz filter (two passes of a box filter along
rows, then along columns, window ``ceil(n / 128)``), samples a 64x64 grid at pixel centres,
takes the 16x16 low-frequency block of its DCT and sets each bit where a coefficient exceeds the
median. The reference runs that filter over every full-resolution pixel, which is why it costs
hundreds of milliseconds on a 12 MP photo.

Blur and sampling are linear, so per axis they are one 64 x n matrix ``A`` (each row the
box-of-box kernel around one sample point, with PDQ's truncated-window normalisation at the
edges), and the 64x64 buffer is ``A_rows @ luma @ A_cols.T``. That is exact at full resolution.
It also lets us hash a reduced image (JPEG draft decode, ``Image.reduce``): each reduced pixel
is the average of a k x k block of the original, so the reduced matrix is the full-resolution
one with its columns summed over each block. Window sizes and sample positions still come from
the original dimensions, which is why ``pdq_from_image`` takes ``original_size``. Measured on the
shared test images (see ``tests/test_pdq.py``), reducing to at least 256 px (JPEG) or 512 px
(other formats) on the short side keeps every image of quality >= 80 within a few bits of the
reference.

API used by the rest of the package:
- ``pdq_from_image(image, original_size=None) -> (hex, quality)``
- ``pdq_from_rgb(array) -> (hex, quality)`` for an (H, W, 3) uint8 array, exact algorithm.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image

from ..media._frames import image_luma

_MIN_HASHABLE_DIM = 5  # the reference returns an all-zero hash of quality 0 below this
_EMPTY_HASH = "0" * 64
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]


def _dct_matrix() -> Float64Array:
    i = np.arange(1, 17, dtype=np.float64)[:, None]
    j = np.arange(64, dtype=np.float64)[None, :]
    matrix: Float64Array = np.sqrt(2.0 / 64.0) * np.cos(np.pi / 128.0 * i * (2.0 * j + 1.0))
    return matrix


_DCT = _dct_matrix()
_DCT.setflags(write=False)
#: PDQ's 16 x 64 DCT-II rows for frequencies 1..16 (no DC row). TMK's frame feature (PDQF)
#: is this DCT of a 64x64 frame, so it shares the matrix.
DCT_MATRIX = _DCT


def _box_transpose(rows: Float64Array, n: int, window: int) -> Float64Array:
    """``rows @ B`` for PDQ's 1-D box filter ``B`` (``box1DFloat``), without forming ``B``.

    Output ``k`` of ``box1DFloat`` is the mean of inputs ``k - left .. k + right``, clipped to the
    vector, divided by the number of inputs actually summed (the edge phases 2 and 4).
    """
    half = (window + 2) // 2
    left, right = window - half, half - 1
    k = np.arange(n)
    count = np.minimum(n - 1, k + right) - np.maximum(0, k - left) + 1
    weighted = rows / count
    csum = np.zeros((rows.shape[0], n + 1))
    np.cumsum(weighted, axis=1, out=csum[:, 1:])
    # (rows @ B)[p] = sum of weighted[k] over the outputs k whose window covers p.
    lo = np.maximum(0, k - right)
    hi = np.minimum(n - 1, k + left)
    out: Float64Array = csum[:, hi + 1] - csum[:, lo]
    return out


@lru_cache(maxsize=32)
def _full_axis_matrix(n: int) -> Float64Array:
    """64 x n: Jarosz filter (two passes) followed by decimation, along one axis."""
    window = (n + 2 * 64 - 1) // (2 * 64)
    samples = ((np.arange(64) + 0.5) * n / 64).astype(np.int64)
    rows = np.zeros((64, n))
    rows[np.arange(64), samples] = 1.0
    for _ in range(2):
        rows = _box_transpose(rows, n, window)
    return rows


@lru_cache(maxsize=64)
def _axis_matrix(original: int, reduced: int) -> Float32Array:
    """64 x reduced: the full-resolution operator integrated over each reduced pixel's block."""
    full = _full_axis_matrix(original)
    if reduced == original:
        return full.astype(np.float32)
    csum = np.zeros((64, original + 1))
    np.cumsum(full, axis=1, out=csum[:, 1:])
    scale = original / reduced
    for k in (2, 4, 8, 16, 32, 64, 128):  # draft and reduce() use integer blocks, last one partial
        if reduced == -(-original // k):
            scale = float(k)
            break
    edges = np.minimum(np.arange(reduced + 1) * scale, float(original))
    base = np.floor(edges).astype(np.int64)
    frac = edges - base
    nxt = np.minimum(base + 1, original)
    at_edges = csum[:, base] + (csum[:, nxt] - csum[:, base]) * frac
    reduced_matrix: Float32Array = np.diff(at_edges, axis=1).astype(np.float32)
    return reduced_matrix


def _quality(buffer: Float64Array) -> int:
    """``pdqImageDomainQualityMetric``: count of significant gradients on the 64x64 buffer."""
    down = np.trunc((buffer[:-1, :] - buffer[1:, :]) * 100.0 / 255.0)
    across = np.trunc((buffer[:, :-1] - buffer[:, 1:]) * 100.0 / 255.0)
    gradient_sum = int(np.abs(down).sum() + np.abs(across).sum())
    return min(100, gradient_sum // 90)


def _bits_hex(coefficients: Float64Array) -> str:
    flat = coefficients.ravel()
    median = np.partition(flat, 127)[127]  # torben() over 256 values: the 128th smallest
    # pdqhash lists bit 255 first; keep its hex so hashes interoperate with ThreatExchange.
    bits = (flat > median)[::-1].astype(np.uint8)
    return np.packbits(bits).tobytes().hex()


@lru_cache(maxsize=64)
def _banded_axis(original: int, reduced: int) -> tuple[npt.NDArray[np.intp], Float32Array]:
    """The axis matrix as (start column, weights) per output row: each row's kernel is a narrow
    band, so applying it as shifted row sums costs a few hundred thousand multiply-adds and never
    enters BLAS (whose spinning worker threads would slow the decoder that runs next)."""
    matrix = _axis_matrix(original, reduced)
    nonzero = matrix != 0
    first = nonzero.argmax(axis=1)
    last = reduced - 1 - nonzero[:, ::-1].argmax(axis=1)
    band = int((last - first).max()) + 1
    starts = np.minimum(first, reduced - band).astype(np.intp)
    columns = starts[:, None] + np.arange(band)[None, :]
    weights = np.take_along_axis(matrix, columns, axis=1)
    return starts, np.ascontiguousarray(weights.T)  # (band, 64)


def _row_pass(
    luma: Float32Array, starts: npt.NDArray[np.intp], weights: Float32Array
) -> Float32Array:
    partial = np.zeros((64, luma.shape[1]), dtype=np.float32)
    for offset, row_weights in enumerate(weights):
        partial += row_weights[:, None] * luma[starts + offset]
    return partial


def _column_pass(
    partial: Float32Array, starts: npt.NDArray[np.intp], weights: Float32Array
) -> Float64Array:
    buffer = np.zeros((64, 64), dtype=np.float64)
    for offset, column_weights in enumerate(weights):
        buffer += partial[:, starts + offset] * column_weights[None, :]
    return buffer


def _buffers(
    luma: Float32Array, original_size: tuple[int, int], *, dihedral: bool
) -> list[Float64Array]:
    """The 64x64 blurred-and-sampled buffer of the image, and with ``dihedral`` of its 7
    rotations and mirrors, in the order original, rot90, rot180, rot270, flip x, flip y,
    flip +1, flip -1.

    The mirrors are filtered for real, not derived from the DCT by sign flips (the reference's
    ``dct16OriginalTo*``): PDQ's box windows and sample grid are not symmetric, so the sign-flip
    shortcut can land several bits away from the hash of the mirrored image, and a mirrored
    copy near the threshold would be missed. A transpose commutes with the filter, so the
    rotations come from transposing the four flipped buffers.
    """
    width, height = original_size
    rows, cols = luma.shape
    row_starts, row_weights = _banded_axis(height, rows)
    col_starts, col_weights = _banded_axis(width, cols)
    down = _row_pass(luma, row_starts, row_weights)
    original = _column_pass(down, col_starts, col_weights)
    if not dihedral:
        return [original]
    up = _row_pass(luma[::-1], row_starts, row_weights)  # the image flipped upside down
    mirrored = _column_pass(down[:, ::-1], col_starts, col_weights)  # left-right mirror
    flipped = _column_pass(up, col_starts, col_weights)
    turned = _column_pass(up[:, ::-1], col_starts, col_weights)  # rotated 180 degrees
    return [original, mirrored.T, turned, flipped.T, flipped, mirrored, original.T, turned.T]


def pdq_from_luma(luma: Float32Array, original_size: tuple[int, int]) -> tuple[str, int]:
    """PDQ of a luma plane that is the original image, or a block-averaged reduction of it.

    ``original_size`` is (width, height) of the full-resolution image.
    """
    hashes, quality = pdq_variants_from_luma(luma, original_size, dihedral=False)
    return hashes[0], quality


def pdq_variants_from_luma(
    luma: Float32Array, original_size: tuple[int, int], *, dihedral: bool = True
) -> tuple[tuple[str, ...], int]:
    """Like ``pdq_from_luma``; with ``dihedral`` also the hashes of the 7 rotated/mirrored
    images (order: original, rot90, rot180, rot270, flip x, flip y, flip +1, flip -1)."""
    width, height = original_size
    if width < _MIN_HASHABLE_DIM or height < _MIN_HASHABLE_DIM:
        return (_EMPTY_HASH,) * (8 if dihedral else 1), 0
    buffers = _buffers(luma, original_size, dihedral=dihedral)
    hashes = tuple(_bits_hex(_DCT @ buffer @ _DCT.T) for buffer in buffers)
    return hashes, _quality(buffers[0])


def pdq_from_rgb(array: npt.NDArray[np.uint8]) -> tuple[str, int]:
    """PDQ of an (H, W, 3) uint8 RGB array at its own size (the exact reference algorithm)."""
    if array.ndim != 3 or array.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {array.shape}")
    luma = np.asarray(array[..., :3].astype(np.float32) @ _LUMA, dtype=np.float32)
    return pdq_from_luma(luma, (array.shape[1], array.shape[0]))


def pdq_from_image(
    image: Image.Image, *, original_size: tuple[int, int] | None = None
) -> tuple[str, int]:
    """PDQ of a Pillow image, matching ``pdqhash`` on ``original.convert("RGB")``.

    ``image`` may be a reduced decode (JPEG draft) of an original of ``original_size``
    (width, height); large images are shrunk further with ``Image.reduce`` before hashing.
    """
    hashes, quality = pdq_variants_from_image(image, original_size=original_size, dihedral=False)
    return hashes[0], quality


def pdq_variants_from_image(
    image: Image.Image, *, original_size: tuple[int, int] | None = None, dihedral: bool = True
) -> tuple[tuple[str, ...], int]:
    """``pdq_from_image`` plus, with ``dihedral``, the 7 rotated/mirrored variants."""
    size = original_size if original_size is not None else image.size
    return pdq_variants_from_luma(image_luma(image), size, dihedral=dihedral)
