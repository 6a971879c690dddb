"""Scoring two TMK+PDQF values the way ``tmk-two-level-score`` does.

Level 1 is the cosine of the two pure-average features: one 256-d dot product, cheap enough
to shortlist a whole list through a vector index. Level 2 is the temporal match kernel
(Poullot et al.): for each period T, the four dot products between the two videos' cos/sin
features of each harmonic j make the kernel a trigonometric polynomial in the time offset,

    K(d) = cc_0 + sum_j (cc_j + ss_j) cos(j w d) + (sc_j - cs_j) sin(j w d),   w = 2 pi / T,

which the reference evaluates at every whole-frame offset d = 0..T-1 and maximises; the score
is the best period's maximum over ``a_0 + 2 sum_j a_j`` (1 for identical frames in the same
order) and the argmax is the time offset between the two videos.

K(d) is the real part of the polynomial ``sum_j c_j z^j`` at the T-th roots of unity
``z = e^{i w d}``, so Horner's rule over all offsets at once costs 31 vector multiply-adds per
period: 1.6 ms for the four periods, against 13 ms for prime-length FFTs and far more for the
reference's per-offset recurrence, and exact in float64 (the reference accumulates in float32;
the results agree to about 1e-6).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from .._errors import InvalidHashError
from ._tmk_format import FRAMES_PER_SECOND, TmkHash

__all__ = [
    "Level2Score",
    "TwoLevelScore",
    "check_compatible",
    "level1_score",
    "level2_score",
    "two_level_score",
]

C128 = npt.NDArray[np.complex128]


def check_compatible(a: TmkHash, b: TmkHash) -> None:
    """``InvalidHashError`` unless the two values were made with the same parameters (the
    reference's ``areCompatible``): otherwise their scores mean nothing."""
    if a.frames_per_second != b.frames_per_second:
        raise InvalidHashError(
            f"TMK values made at {a.frames_per_second} and {b.frames_per_second} fps"
        )
    if a.periods != b.periods:
        raise InvalidHashError(f"TMK periods differ: {a.periods} and {b.periods}")
    ca = a.fourier_coefficients.astype(np.float64)
    cb = b.fourier_coefficients.astype(np.float64)
    if ca.shape != cb.shape:
        raise InvalidHashError(f"TMK values have {len(ca)} and {len(cb)} Fourier coefficients")
    if np.any(np.abs(ca - cb) > 1e-6 * np.maximum(np.abs(ca), np.abs(cb))):
        raise InvalidHashError("TMK Fourier coefficients differ")


def level1_score(a: TmkHash, b: TmkHash) -> float:
    """Cosine of the pure-average features, in [-1, 1]. A zero average (an empty or flat
    video) scores 0 (the reference returns 0 for two such and NaN for one)."""
    check_compatible(a, b)
    u = a.pure_average.astype(np.float64)
    v = b.pure_average.astype(np.float64)
    norms = float(np.linalg.norm(u)) * float(np.linalg.norm(v))
    return float(np.dot(u, v) / norms) if norms > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Level2Score:
    """The level-2 score and where it was found.

    ``score`` is in [0, 1]. ``offset`` is the best offset of the winning period ``period``,
    in 15 fps frames, folded into (-T/2, T/2]: frame ``t`` of the second video shows what
    frame ``t + offset`` of the first shows. It is coarse (about T/64 frames: 32 harmonics)
    and biased on videos much shorter than the period, as the reference's is.
    """

    score: float
    offset: int
    period: int
    period_offsets: tuple[int, ...]
    period_scores: tuple[float, ...]

    @property
    def offset_seconds(self) -> float:
        return self.offset / FRAMES_PER_SECOND


@lru_cache(maxsize=16)
def _roots_of_unity(period: int) -> C128:
    """``e^{2 pi i d / T}`` for every whole-frame offset d (0.5 MB for the four periods)."""
    roots: C128 = np.exp(2j * np.pi * np.arange(period, dtype=np.float64) / period)
    roots.setflags(write=False)
    return roots


def _kernel(spectrum: C128, period: int) -> npt.NDArray[np.float64]:
    """``Re(sum_j spectrum[j] z^j)`` at every T-th root of unity z, by Horner's rule.

    Harmonics j >= T (possible in a generic file) alias to j mod T by themselves: z^T = 1.
    """
    roots = _roots_of_unity(period)
    values = np.full(period, spectrum[-1], dtype=np.complex128)
    for coefficient in spectrum[-2::-1]:
        values *= roots
        values += coefficient
    return values.real


def level2_score(a: TmkHash, b: TmkHash) -> Level2Score:
    """The reference's level-2 score (``computeLevel2Score``) with its best offsets."""
    check_compatible(a, b)
    coefficients = a.fourier_coefficients.astype(np.float64)
    if not a.periods or not len(coefficients):
        return Level2Score(0.0, 0, 0, (), ())
    normalizer = float(coefficients[0] + 2.0 * np.sum(coefficients[1:]))
    ac, asn = a.cos_features.astype(np.float64), a.sin_features.astype(np.float64)
    bc, bsn = b.cos_features.astype(np.float64), b.sin_features.astype(np.float64)
    cc = np.einsum("pcd,pcd->pc", ac, bc)
    ss = np.einsum("pcd,pcd->pc", asn, bsn)
    sc = np.einsum("pcd,pcd->pc", asn, bc)
    cs = np.einsum("pcd,pcd->pc", ac, bsn)
    # Re(c e^{ijx}) = Re(c) cos(jx) - Im(c) sin(jx), so c_j = (cc + ss) - i (sc - cs); the
    # reference's kernel takes the j = 0 term as cc_0 alone (sin(0) features are zero).
    spectrum = (cc + ss) - 1j * (sc - cs)
    spectrum[:, 0] = cc[:, 0]
    offsets: list[int] = []
    values: list[float] = []
    for row, period in enumerate(a.periods):
        kernel = _kernel(spectrum[row], period)
        best = int(np.argmax(kernel))  # the first maximum, as the reference keeps it
        offsets.append(best)
        values.append(float(kernel[best]) / normalizer if normalizer > 0 else 0.0)
    winner = int(np.argmax(values))
    period, offset = a.periods[winner], offsets[winner]
    # b(t) = a(t + s) peaks at offset s mod T: fold it to a signed shift.
    shift = offset - period if offset > period // 2 else offset
    return Level2Score(values[winner], shift, period, tuple(offsets), tuple(values))


@dataclass(frozen=True, slots=True)
class TwoLevelScore:
    """Both scores of a pair, as ``tmk-two-level-score --c1 -1 --c2 -1`` prints them."""

    level1: float
    level2: float
    detail: Level2Score

    @property
    def offset(self) -> int:
        return self.detail.offset

    def is_match(self, level1: float, level2: float) -> bool:
        """The reference's decision: both scores at or above their thresholds."""
        return self.level1 >= level1 and self.level2 >= level2


def two_level_score(a: TmkHash, b: TmkHash) -> TwoLevelScore:
    detail = level2_score(a, b)
    return TwoLevelScore(level1_score(a, b), detail.score, detail)
