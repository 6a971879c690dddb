"""The shortlist: which few listed images are worth verifying for an upload.

Every listed keypoint is indexed (faiss, through the project's vector index files) under a
64-d *mirror-invariant* vector: its RootSIFT descriptor summed over each pair of bins that the
mirror permutation swaps, then normalised. A keypoint and its mirror image get the same
vector, so one search covers an upload and its mirror, no mirrored copy of a listed image is
stored or indexed, and the halved width halves the cost of the coarse quantizer and of the
codes. It conflates a pattern with its mirror image, which cost the shortlist nothing
measurable; verification then checks both orientations with the full descriptors.

Each upload keypoint then votes for the listed entries among its nearest listed keypoints
(``votes``); the best-voted few are verified.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._sift_features import DIM, MIRROR_PERMUTATION, Features

__all__ = ["SHORTLIST_DIM", "ivf_factory", "shortlist_vectors", "votes"]

# The mirror permutation swaps descriptor bins in pairs and fixes none (grid rows r and 3 - r
# never coincide), so the 128 bins fall into 64 pairs.
_ORBIT_A = np.array([i for i in range(DIM) if i < MIRROR_PERMUTATION[i]], dtype=np.intp)
_ORBIT_B = MIRROR_PERMUTATION[_ORBIT_A]
#: Width of the shortlist vectors.
SHORTLIST_DIM = 64
#: Below this many listed keypoints (a few hundred images) the shortlist is an exact flat
#: search: fast at that size, and a quantizer trained on so few points would be poor.
EXACT_BELOW = 100_000
#: IVF lists probed per query. Measured at 10k listed images: top-3 recall the same at 1, 2,
#: 4 and 8 probes; 4 leaves room for lists whose keypoints cluster differently.
NPROBE = 4


def shortlist_vectors(features: Features) -> npt.NDArray[np.float32]:
    """(n, 64) unit vectors, one per keypoint, equal for a keypoint and its mirror image."""
    root = features.rootsift()
    sym = root[:, _ORBIT_A] + root[:, _ORBIT_B]
    norm = np.linalg.norm(sym, axis=1, keepdims=True)
    out = sym / np.maximum(norm, np.float32(1e-7))
    return np.ascontiguousarray(out, dtype=np.float32)


def ivf_factory(vector_count: int) -> tuple[str, str]:
    """The faiss index description and its search parameters for ``vector_count`` vectors.

    Large lists: an inverted file over ~sqrt(n) lists (a power of two) with 4-bit fast-scan
    product quantization, 16 sub-quantizers: 8 bytes a keypoint plus faiss's 8-byte id, about
    8 KB per listed image of 500 keypoints. Measured against the uncompressed IVF and against
    verifying every entry, the shortlist finds the same copies (bench_own_list.py). Small
    lists: exact.
    """
    if vector_count < EXACT_BELOW:
        return "Flat", ""
    nlist = int(2 ** round(math.log2(max(64.0, math.sqrt(vector_count)))))
    return f"IVF{nlist},PQ16x4fs", f"nprobe={NPROBE}"


def votes(
    entry_rows: npt.NDArray[np.int64], distances: npt.NDArray[np.float32], tie: float = 1.5
) -> dict[int, float]:
    """Votes per listed entry from the (q, k) nearest-neighbour answer of an upload's keypoints.

    Each upload keypoint gives one vote, shared equally by the distinct entries among its
    neighbours whose (squared L2) distance is within ``tie`` times its nearest one. A keypoint
    of content that many listed images share (the same app chrome, logo or caption in many
    screenshots) is about equally close to all of them and spreads its vote thin; a keypoint
    of the photo itself has one clearly nearest entry and gives it the whole vote. So a list
    full of screenshots of one app does not crowd a listed photo out of the shortlist.
    """
    n, k = entry_rows.shape
    if n == 0 or k == 0:
        return {}
    ok = entry_rows >= 0
    best = np.where(ok, distances, np.inf).min(axis=1, keepdims=True)
    near = ok & (distances <= best * tie + 1e-6)
    rows = np.repeat(np.arange(n, dtype=np.int64), k).reshape(n, k)
    key = np.unique((rows[near] << 32) + entry_rows[near])  # distinct (keypoint, entry)
    row_of, entry_of = key >> 32, key & ((1 << 32) - 1)
    share = 1.0 / np.bincount(row_of, minlength=n)[row_of]
    totals = np.bincount(entry_of, weights=share)
    found = np.flatnonzero(totals)
    return {int(e): float(totals[e]) for e in found}
