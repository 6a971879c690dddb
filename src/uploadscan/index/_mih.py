"""Building blocks of exact multi-index hashing over binary codes (see ``_hamming``).

Kept apart from the index file so the cost model, substring keys and popcount kernels can be
read, tested and tuned on their own. All functions work on numpy arrays, vectorised across
queries and candidates: a Python loop per candidate would cost more than the whole search.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import numpy.typing as npt

MAX_WIDTH = 24  # substring keys go through float32 arithmetic, exact below 2**24
# Cost model (microseconds, one thread, measured on a 2-core EPYC): a probing call's fixed numpy
# overhead, per probed bucket, per candidate row verified; a scanning call's fixed overhead and
# its cost per row. Only used to choose a layout or scanning, never to decide what matches.
COST_PROBE_CALL, COST_PROBE, COST_CANDIDATE = 60.0, 0.05, 0.06
COST_SCAN_CALL, COST_SCAN = 15.0, 0.02
MEMORY_FACTOR = 2.75  # tables may use up to this many times the raw code bytes ...
MEMORY_FLOOR = 32 << 20  # ... or this much, whichever is larger (small lists)
SCAN_BLOCK = 1 << 17


def expand_ranges(
    starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Concatenate ``arange(s, s + c)`` for every (s, c) pair without a Python loop."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.shape[0] else 0
    out: npt.NDArray[np.int64] = np.arange(total, dtype=np.int64)
    out += np.repeat(starts - (ends - counts), counts)
    return out


def as_words(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """View (n, nbytes) uint8 codes as (n, nbytes/8) uint64 words for popcount."""
    return np.ascontiguousarray(codes).view(np.uint64)


def row_distances(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.int32]:
    """Hamming weight of each row of XOR-ed words (column adds beat ``sum(axis=1)`` here)."""
    counts = np.bitwise_count(words)
    total = counts[:, 0].astype(np.int32)
    for column in range(1, counts.shape[1]):
        total += counts[:, column]
    return total


def within(xor: npt.NDArray[np.uint64], r: int) -> npt.NDArray[np.bool_]:
    """Rows of XOR-ed words with at most ``r`` bits set (``r`` below the code length).

    The hot path of every search, so for 256-bit codes the four per-word counts (one byte
    each) are summed by one multiply: the top byte of ``v * 0x01010101`` is their sum modulo
    256. Only a distance of exactly 256 wraps (to 0); those rows are excluded explicitly.
    """
    counts = np.bitwise_count(xor)
    if counts.shape[1] != 4:
        small: npt.NDArray[np.bool_] = row_distances(xor) <= r
        return small
    packed = counts.view(np.uint32).reshape(-1)
    total = packed * np.uint32(0x01010101)
    total >>= np.uint32(24)
    within: npt.NDArray[np.bool_] = (total <= r) & (packed != np.uint32(0x40404040))
    return within


def scan(
    words: npt.NDArray[np.uint64],
    queries: npt.NDArray[np.uint64],
    max_distance: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Brute force in blocks: (query, row, distance) of every hit, sorted by query then row."""
    found_q, found_r, found_d = [], [], []
    group = 32  # queries per pass, so that a block still holds >= SCAN_BLOCK / 32 rows
    for first in range(0, queries.shape[0], group):
        some = queries[first : first + group]
        block = SCAN_BLOCK // some.shape[0]
        for start in range(0, words.shape[0], block):
            chunk = words[start : start + block]
            xor = chunk[None, :, :] ^ some[:, None, :]
            dist = row_distances(xor.reshape(-1, words.shape[1])).reshape(some.shape[0], -1)
            q, r = np.nonzero(dist <= max_distance)
            found_q.append(q + first)
            found_r.append(r + start)
            found_d.append(dist[q, r])
    if not found_q:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int32)
    q_all, r_all = np.concatenate(found_q), np.concatenate(found_r)
    order = np.lexsort((r_all, q_all))
    return q_all[order], r_all[order], np.concatenate(found_d)[order]


def choose_widths(n: int, bits: int, design_distance: int) -> tuple[int, ...]:
    """Substring widths minimising the modelled cost at ``design_distance`` within the memory
    budget; ``()`` means a flat file (scanning is cheapest, as for small lists)."""
    pos_bytes = 2 if n <= 1 << 16 else 3 if n <= 1 << 24 else 4
    budget = max(MEMORY_FACTOR * bits / 8 * n, MEMORY_FLOOR)
    best: tuple[float, tuple[int, ...]] = (scan_cost(n), ())
    for m in range(max(2, -(-bits // MAX_WIDTH)), min(bits, 64) + 1):
        widths = split(bits, m)
        memory = bits / 8 * n + (m - 1) * pos_bytes * n + 4 * sum(2**w + 1 for w in widths)
        probes, candidates = probe_cost(widths, design_distance, n)
        cost = probing_cost(probes, candidates)
        if memory <= budget and cost < best[0]:
            best = (cost, widths)
    return best[1]


def scan_cost(n: int) -> float:
    return COST_SCAN_CALL + COST_SCAN * n


def probing_cost(probes: int, candidates: float) -> float:
    return COST_PROBE_CALL + COST_PROBE * probes + COST_CANDIDATE * candidates


def split(bits: int, m: int) -> tuple[int, ...]:
    base, extra = divmod(bits, m)
    return (base + 1,) * extra + (base,) * (m - extra)


def radii(m: int, max_distance: int) -> list[int]:
    """Per-table probe radius from the pigeonhole bound (-1: the table need not be probed)."""
    s, a = divmod(max_distance, m)
    return [s] * (a + 1) + [s - 1] * (m - a - 1)


def probe_cost(widths: tuple[int, ...], max_distance: int, n: int) -> tuple[int, float]:
    probes, candidates = 0, 0.0
    for width, radius in zip(widths, radii(len(widths), max_distance), strict=True):
        count = sum(comb(width, k) for k in range(min(radius, width) + 1))
        probes += count
        candidates += count * n / 2**width
    return probes, candidates


def key_weights(perm: npt.NDArray[np.uint16], widths: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """(bits, m) matrix W such that ``unpackbits(code) @ W`` is the m substring values."""
    weights = np.zeros((perm.shape[0], len(widths)), np.float32)
    order = perm.astype(np.intp)
    start = 0
    for table, width in enumerate(widths):
        weights[order[start : start + width], table] = 2.0 ** np.arange(width)
        start += width
    return weights


def subkeys(
    codes: npt.NDArray[np.uint8], weights: npt.NDArray[np.float32]
) -> npt.NDArray[np.uint32]:
    """(rows, m) substring values; one matrix product, exact because widths are <= 24 bits."""
    out = np.empty((codes.shape[0], weights.shape[1]), np.uint32)
    for start in range(0, codes.shape[0], 1 << 15):
        bits = np.unpackbits(codes[start : start + (1 << 15)], axis=1).astype(np.float32)
        out[start : start + bits.shape[0]] = bits @ weights
    return out


def stable_argsort(keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Stable argsort of < 2**32 keys as one 64-bit sort (key, row): numpy's vectorised sort
    of plain integers is several times faster than ``argsort(kind="stable")``."""
    packed = keys.astype(np.uint64) << np.uint64(32)
    packed |= np.arange(keys.shape[0], dtype=np.uint64)
    packed.sort()
    return packed.astype(np.uint32)  # keeps the low 32 bits: the row


def xor_masks(width: int, radius: int) -> npt.NDArray[np.int64]:
    masks = [0]
    for k in range(1, min(radius, width) + 1):
        masks.extend(sum(1 << b for b in bits) for bits in combinations(range(width), k))
    return np.asarray(masks, dtype=np.int64)
