"""Exact Hamming-distance search over fixed-length binary codes (PDQ's 256 bits, 64-bit hashes).

A hash list is only useful if a listed image is always found: an approximate index that misses a
true match inside the threshold lets known content through. So this index is exact (the same hits
as brute force, for any radius) and fast, by multi-index hashing:

- The code's bits (in a fixed shuffled order, so correlated PDQ bits do not pile up in one
  substring) are cut into ``m`` substrings. Pigeonhole: if two codes differ in at most
  ``r = s*m + a`` bits (``0 <= a < m``), then one of the first ``a + 1`` substrings differs in at
  most ``s`` bits or one of the others in at most ``s - 1`` (otherwise the total would exceed r).
- Each substring has a table: rows bucketed by substring value, stored as CSR (offsets + row
  positions). A query probes every value within the substring radius (precomputed XOR masks),
  gathers the candidate rows, verifies the full distance with a vectorised popcount and drops
  duplicates found through several tables.
- Rows are stored sorted by the first substring, so table 0 needs no position array.

The number and width of the substrings are chosen from ``n`` when the file is built; the radius
is a query-time argument. When a radius is so large that probing would cost more than reading
every code, the search scans instead, so exactness never depends on the build parameters.

API (kept stable for the rest of the package):
- ``SearchHits``: parallel arrays ``query`` (int32, row of the query), ``ids`` (int64), ``distance``
  (int32); every indexed code within ``max_distance`` of a query, nothing beyond.
- ``HammingIndex.build(codes, ids, path)``: write an index file for (n, nbytes) uint8 ``codes``
  with int64 ``ids``; written to a temporary file and renamed into place.
- ``HammingIndex.open(path)``: memory-map an index file.
- ``index.search(queries, max_distance) -> SearchHits``; ``len(index)``; ``index.nbytes``.
- ``brute_force_search(codes, ids, queries, max_distance) -> SearchHits`` for small sets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import combinations
from math import comb
from pathlib import Path

import numpy as np
import numpy.typing as npt

from uploadscan._errors import ConfigError, IndexError_, InvalidHashError
from uploadscan._mmapfile import MappedFile, SectionSpec, SectionWriter, map_file

__all__ = ["HammingIndex", "SearchHits", "brute_force_search", "expand_ranges"]

_KIND = "hamming"
_VERSION = 1
_PERM_SEED = 0x5D1E_2024  # only used at build time; the permutation itself is stored in the file
_MAX_WIDTH = 24  # substring keys go through float32 arithmetic, exact below 2**24
# Cost model (microseconds, one thread, measured on a 2-core EPYC): per probed bucket, per
# candidate row verified, per row scanned by brute force.
_COST_PROBE, _COST_CANDIDATE, _COST_SCAN = 0.05, 0.06, 0.012
_MEMORY_FACTOR = 2.75  # tables may use up to this many times the raw code bytes ...
_MEMORY_FLOOR = 32 << 20  # ... or this much, whichever is larger (small lists)
_CHUNK_CANDIDATES = 1 << 21  # bound the working set of one batch step
_SCAN_BLOCK = 1 << 17


@dataclass(frozen=True, slots=True)
class SearchHits:
    """Every (query row, indexed id, distance) within the radius, sorted by query then row."""

    query: npt.NDArray[np.int32]
    ids: npt.NDArray[np.int64]
    distance: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _empty_hits() -> SearchHits:
    return SearchHits(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int32))


def expand_ranges(
    starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Concatenate ``arange(s, s + c)`` for every (s, c) pair without a Python loop."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.shape[0] else 0
    out: npt.NDArray[np.int64] = np.arange(total, dtype=np.int64)
    out += np.repeat(starts - (ends - counts), counts)
    return out


def _as_words(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """View (n, nbytes) uint8 codes as (n, nbytes/8) uint64 words for popcount."""
    return np.ascontiguousarray(codes).view(np.uint64)


def _row_distances(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.int32]:
    """Hamming weight of each row of XOR-ed words (column adds beat ``sum(axis=1)`` here)."""
    counts = np.bitwise_count(words)
    total = counts[:, 0].astype(np.int32)
    for column in range(1, counts.shape[1]):
        total += counts[:, column]
    return total


def _within(xor: npt.NDArray[np.uint64], r: int) -> npt.NDArray[np.bool_]:
    """Rows of XOR-ed words with at most ``r`` bits set (``r`` below the code length).

    The hot path of every search, so for 256-bit codes the four per-word counts (one byte
    each) are summed by one multiply: the top byte of ``v * 0x01010101`` is their sum modulo
    256. Only a distance of exactly 256 wraps (to 0); those rows are excluded explicitly.
    """
    counts = np.bitwise_count(xor)
    if counts.shape[1] != 4:
        small: npt.NDArray[np.bool_] = _row_distances(xor) <= r
        return small
    packed = counts.view(np.uint32).reshape(-1)
    total = packed * np.uint32(0x01010101)
    total >>= np.uint32(24)
    within: npt.NDArray[np.bool_] = (total <= r) & (packed != np.uint32(0x40404040))
    return within


def _check_codes(codes: npt.NDArray[np.uint8], code_bytes: int | None, what: str) -> None:
    if codes.ndim != 2 or codes.dtype != np.uint8:
        raise InvalidHashError(f"{what} must be a 2-D uint8 array, got {codes.dtype} {codes.shape}")
    width = codes.shape[1]
    if code_bytes is None and (width == 0 or width % 8):
        raise InvalidHashError(f"{what}: code length must be a positive multiple of 8 bytes")
    if code_bytes is not None and width != code_bytes:
        raise InvalidHashError(f"{what} are {width} bytes long; this index holds {code_bytes}")


def _check_distance(max_distance: int) -> None:
    if isinstance(max_distance, bool) or not isinstance(max_distance, int | np.integer):
        raise ConfigError(f"max_distance must be an int, got {max_distance!r}")
    if max_distance < 0:
        raise ConfigError(f"max_distance must be >= 0, got {max_distance}")


def _scan(
    words: npt.NDArray[np.uint64],
    queries: npt.NDArray[np.uint64],
    max_distance: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Brute force in blocks: (query, row, distance) of every hit, sorted by query then row."""
    found_q, found_r, found_d = [], [], []
    block = max(1, _SCAN_BLOCK // max(1, queries.shape[0]))
    for start in range(0, words.shape[0], block):
        chunk = words[start : start + block]
        xor = chunk[None, :, :] ^ queries[:, None, :]
        dist = _row_distances(xor.reshape(-1, words.shape[1])).reshape(queries.shape[0], -1)
        q, r = np.nonzero(dist <= max_distance)
        found_q.append(q)
        found_r.append(r + start)
        found_d.append(dist[q, r])
    if not found_q:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int32)
    q_all, r_all = np.concatenate(found_q), np.concatenate(found_r)
    order = np.lexsort((r_all, q_all))
    return q_all[order], r_all[order], np.concatenate(found_d)[order]


def brute_force_search(
    codes: npt.NDArray[np.uint8],
    ids: npt.NDArray[np.int64],
    queries: npt.NDArray[np.uint8],
    max_distance: int,
) -> SearchHits:
    """Compare every query with every code; the reference the index is tested against."""
    _check_codes(codes, None, "codes")
    _check_codes(queries, codes.shape[1], "queries")
    _check_distance(max_distance)
    if codes.shape[0] == 0 or queries.shape[0] == 0:
        return _empty_hits()
    q, rows, dist = _scan(_as_words(codes), _as_words(queries), int(max_distance))
    return SearchHits(q.astype(np.int32), np.asarray(ids, np.int64)[rows], dist)


def _choose_widths(n: int, bits: int, design_distance: int) -> tuple[int, ...]:
    """Substring widths minimising the modelled cost at ``design_distance`` within the memory
    budget; ``()`` means a flat file (scanning is cheapest, as for small lists)."""
    pos_bytes = 2 if n <= 1 << 16 else 3 if n <= 1 << 24 else 4
    budget = max(_MEMORY_FACTOR * bits / 8 * n, _MEMORY_FLOOR)
    best: tuple[float, tuple[int, ...]] = (_COST_SCAN * n, ())
    for m in range(max(2, -(-bits // _MAX_WIDTH)), min(bits, 64) + 1):
        widths = _split(bits, m)
        memory = bits / 8 * n + (m - 1) * pos_bytes * n + 4 * sum(2**w + 1 for w in widths)
        probes, candidates = _probe_cost(widths, design_distance, n)
        cost = _COST_PROBE * probes + _COST_CANDIDATE * candidates
        if memory <= budget and cost < best[0]:
            best = (cost, widths)
    return best[1]


def _split(bits: int, m: int) -> tuple[int, ...]:
    base, extra = divmod(bits, m)
    return (base + 1,) * extra + (base,) * (m - extra)


def _radii(m: int, max_distance: int) -> list[int]:
    """Per-table probe radius from the pigeonhole bound (-1: the table need not be probed)."""
    s, a = divmod(max_distance, m)
    return [s] * (a + 1) + [s - 1] * (m - a - 1)


def _probe_cost(widths: tuple[int, ...], max_distance: int, n: int) -> tuple[int, float]:
    probes, candidates = 0, 0.0
    for width, radius in zip(widths, _radii(len(widths), max_distance), strict=True):
        count = sum(comb(width, k) for k in range(min(radius, width) + 1))
        probes += count
        candidates += count * n / 2**width
    return probes, candidates


def _key_weights(perm: npt.NDArray[np.uint16], widths: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """(bits, m) matrix W such that ``unpackbits(code) @ W`` is the m substring values."""
    weights = np.zeros((perm.shape[0], len(widths)), np.float32)
    order = perm.astype(np.intp)
    start = 0
    for table, width in enumerate(widths):
        weights[order[start : start + width], table] = 2.0 ** np.arange(width)
        start += width
    return weights


def _subkeys(
    codes: npt.NDArray[np.uint8], weights: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    """(rows, m) substring values; one matrix product, exact because widths are <= 24 bits."""
    out = np.empty((codes.shape[0], weights.shape[1]), np.int64)
    for start in range(0, codes.shape[0], 1 << 16):
        bits = np.unpackbits(codes[start : start + (1 << 16)], axis=1)
        out[start : start + bits.shape[0]] = bits @ weights
    return out


def _xor_masks(width: int, radius: int) -> npt.NDArray[np.int64]:
    masks = [0]
    for k in range(1, min(radius, width) + 1):
        masks.extend(sum(1 << b for b in bits) for bits in combinations(range(width), k))
    return np.asarray(masks, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _ProbePlan:
    """Everything one radius needs, precomputed once: ``unpackbits(q) @ weights`` gives the
    substring value each probe starts from, ``^ xor + base`` the bucket it reads."""

    weights: npt.NDArray[np.float32]
    xor: npt.NDArray[np.int64]
    base: npt.NDArray[np.int64]
    table0_probes: int
    expected_candidates: float
    scan: bool


class HammingIndex:
    """An exact Hamming index over a memory-mapped file; see the module docstring."""

    def __init__(self, mapped: MappedFile) -> None:
        """Use ``HammingIndex.open``; this wraps an already validated mapping."""
        params = mapped.params
        self.path: Path = mapped.path
        self.code_bytes: int = int(params["code_bytes"])
        self._n = int(params["n"])
        self._widths = tuple(int(w) for w in params["widths"])
        s = mapped.sections
        self._mapped = mapped
        self._words = s["codes"].view(np.uint64).reshape(self._n, self.code_bytes // 8)
        self._ids = s["ids"]
        self._offsets = s.get("offsets")
        self._pos_lo = s.get("pos_lo")
        self._pos_hi = s.get("pos_hi")
        self._weights = _key_weights(s["perm"], self._widths)
        bases = [0]
        for width in self._widths:
            bases.append(bases[-1] + 2**width + 1)
        self._bases = np.asarray(bases[:-1], np.int64)
        self._plans: dict[int, _ProbePlan] = {}

    # ---- building -------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        codes: npt.NDArray[np.uint8],
        ids: npt.NDArray[np.int64],
        path: str | os.PathLike[str],
        *,
        design_distance: int | None = None,
    ) -> HammingIndex:
        """Write an index of ``codes`` (n, nbytes) uint8 with one int64 id per row to ``path``.

        ``design_distance`` (default: 31 for 256-bit codes, bits/8 otherwise) only tunes the
        layout; any radius can be searched exactly later.
        """
        _check_codes(codes, None, "codes")
        ids = np.asarray(ids)
        if ids.shape != (codes.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
            raise ConfigError(f"ids must be {codes.shape[0]} integers, got {ids.dtype} {ids.shape}")
        n, code_bytes = codes.shape
        bits = code_bytes * 8
        design = (31 if bits == 256 else bits // 8) if design_distance is None else design_distance
        _check_distance(design)
        widths = _choose_widths(n, bits, design)
        perm = np.random.default_rng(_PERM_SEED).permutation(bits).astype(np.uint16)
        params = {"code_bytes": code_bytes, "n": n, "widths": list(widths)}
        specs = [
            SectionSpec("perm", "<u2", (bits,)),
            SectionSpec("codes", "|u1", (n, code_bytes)),
            SectionSpec("ids", "<i8", (n,)),
        ]
        codes = np.ascontiguousarray(codes)
        ids = ids.astype(np.int64)
        if not widths:
            with SectionWriter(path, _KIND, _VERSION, params, specs) as writer:
                writer.append("perm", perm)
                writer.append("codes", codes)
                writer.append("ids", ids)
            return cls.open(path)
        pos_lo = "<u2" if n <= 1 << 24 else "<u4"
        specs.append(
            SectionSpec(
                "offsets",
                "<u4" if len(widths) * n < 2**32 else "<u8",
                (sum(2**w + 1 for w in widths),),
            )
        )
        specs.append(SectionSpec("pos_lo", pos_lo, ((len(widths) - 1) * n,)))
        if 1 << 16 < n <= 1 << 24:
            specs.append(SectionSpec("pos_hi", "|u1", ((len(widths) - 1) * n,)))
        with SectionWriter(path, _KIND, _VERSION, params, specs) as writer:
            writer.append("perm", perm)
            # Same key arithmetic as search, so build and query can never disagree.
            keys = _subkeys(codes, _key_weights(perm, widths))
            order = np.argsort(keys[:, 0], kind="stable")
            writer.append("codes", codes[order])
            writer.append("ids", ids[order])
            keys = keys[order]
            for table, width in enumerate(widths):
                column = keys[:, table]
                counts = np.bincount(column, minlength=2**width)
                offsets = np.concatenate(([0], np.cumsum(counts))) + table * n
                writer.append("offsets", offsets)
                if table:
                    positions = np.argsort(column, kind="stable").astype(np.uint32)
                    writer.append("pos_lo", positions if pos_lo == "<u4" else positions & 0xFFFF)
                    if n > 1 << 16 and pos_lo == "<u2":
                        writer.append("pos_hi", positions >> 16)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> HammingIndex:
        """Memory-map ``path``; raises ``IndexError_`` if it is missing or damaged."""
        mapped = map_file(path, _KIND, frozenset({_VERSION}))
        try:
            index = cls(mapped)
            index._check_structure()
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexError_(f"index file {path} is damaged ({exc}); rebuild it") from exc
        return index

    def _check_structure(self) -> None:
        """Cheap consistency checks (a few values, never a whole section)."""
        bits = self.code_bytes * 8
        if self.code_bytes % 8 or self._mapped.sections["perm"].shape != (bits,):
            raise ValueError("code length and permutation disagree")
        if sorted(self._mapped.sections["perm"].tolist()) != list(range(bits)):
            raise ValueError("the bit permutation is not a permutation")
        if self._ids.shape != (self._n,) or any(not 0 < w <= _MAX_WIDTH for w in self._widths):
            raise ValueError("sections do not match the parameters")
        if self._widths:
            if sum(self._widths) != bits or self._offsets is None or self._pos_lo is None:
                raise ValueError("substring tables are incomplete")
            ends = self._offsets[self._bases + (2 ** np.asarray(self._widths))]
            firsts = self._offsets[self._bases]
            expected = np.arange(len(self._widths) + 1) * self._n
            if not (np.array_equal(firsts, expected[:-1]) and np.array_equal(ends, expected[1:])):
                raise ValueError("table offsets do not add up to n")

    def verify(self) -> None:
        """Check every section's checksum (reads the whole file; for repair tools)."""
        self._mapped.verify()

    # ---- searching ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Size of the mapped file in bytes."""
        return self._mapped.size

    def _plan(self, max_distance: int) -> _ProbePlan:
        plan = self._plans.get(max_distance)
        if plan is not None:
            return plan
        m = len(self._widths)
        probes, candidates = _probe_cost(self._widths, max_distance, self._n) if m else (0, 0.0)
        cost = _COST_PROBE * probes + _COST_CANDIDATE * candidates
        tables, xors = [np.empty(0, np.intp)], [np.empty(0, np.int64)]
        scan = m == 0 or max_distance >= self.code_bytes * 8 or cost >= _COST_SCAN * self._n
        if not scan:
            for table, radius in enumerate(_radii(m, max_distance)):
                if radius >= 0:
                    masks = _xor_masks(self._widths[table], radius)
                    tables.append(np.full(masks.shape[0], table, np.intp))
                    xors.append(masks)
        probe_table = np.concatenate(tables)
        plan = _ProbePlan(
            weights=np.ascontiguousarray(self._weights[:, probe_table]),
            xor=np.concatenate(xors),
            base=self._bases[probe_table],
            table0_probes=int(tables[1].shape[0]) if len(tables) > 1 else 0,
            expected_candidates=max(1.0, candidates),
            scan=scan,
        )
        self._plans[max_distance] = plan
        return plan

    def search(self, queries: npt.NDArray[np.uint8], max_distance: int) -> SearchHits:
        """Every indexed code within ``max_distance`` bits of each row of ``queries``."""
        _check_codes(queries, self.code_bytes, "queries")
        _check_distance(max_distance)
        r = int(max_distance)
        if self._n == 0 or queries.shape[0] == 0:
            return _empty_hits()
        plan = self._plan(r)
        q_words = _as_words(queries)
        try:
            if plan.scan:
                q, rows, dist = _scan(self._words, q_words, r)
            else:
                step = max(1, int(_CHUNK_CANDIDATES / plan.expected_candidates))
                parts = [
                    self._probe(queries[i : i + step], q_words[i : i + step], plan, r, i)
                    for i in range(0, queries.shape[0], step)
                ]
                q, rows, dist = (np.concatenate(x) for x in zip(*parts, strict=True))
            return SearchHits(q.astype(np.int32), np.take(self._ids, rows), dist)
        except (IndexError, ValueError) as exc:  # offsets/positions that point nowhere
            raise IndexError_(f"index file {self.path} is damaged ({exc}); rebuild it") from exc

    def _probe(
        self,
        queries: npt.NDArray[np.uint8],
        q_words: npt.NDArray[np.uint64],
        plan: _ProbePlan,
        r: int,
        first: int,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32]]:
        """Multi-index search of a few queries; returns (query, row, distance) of the hits."""
        offsets, pos_lo, pos_hi, n = self._offsets, self._pos_lo, self._pos_hi, self._n
        assert offsets is not None and pos_lo is not None
        c = queries.shape[0]
        keys = (np.unpackbits(queries, axis=1) @ plan.weights).astype(np.int64)
        keys ^= plan.xor
        keys += plan.base
        # Probe-major order puts every table-0 candidate first: those are row numbers already.
        slots = keys.T.ravel() if c > 1 else keys.ravel()
        starts = np.take(offsets, slots).astype(np.int64)
        counts = np.take(offsets, slots + 1) - starts
        live = np.flatnonzero(counts)
        counts = counts[live]
        rows = expand_ranges(starts[live], counts)
        head = int(counts[: np.searchsorted(live, plan.table0_probes * c)].sum())
        tail = rows[head:]
        tail -= n
        if pos_hi is not None:  # positions stored as 16 + 8 bits to save a byte per entry
            high = np.take(pos_hi, tail).astype(np.int64)
            high <<= 16
            high |= np.take(pos_lo, tail)
            tail[:] = high
        else:
            tail[:] = np.take(pos_lo, tail)
        xor = np.take(self._words, rows, axis=0)
        if c > 1:
            cand_q = np.repeat(live % c, counts)
            xor ^= np.take(q_words, cand_q, axis=0)
        else:
            cand_q = np.zeros(rows.shape[0], np.int64)
            xor ^= q_words[0]
        hit = np.flatnonzero(_within(xor, r))
        rows, cand_q = rows[hit], cand_q[hit]
        if hit.shape[0] > 1:  # a row found through several tables is reported once
            key = cand_q * n + rows
            order = np.argsort(key, kind="stable")
            key = key[order]
            keep = order[np.concatenate(([True], key[1:] != key[:-1]))]
            rows, cand_q = rows[keep], cand_q[keep]
        dist = _row_distances(np.take(self._words, rows, axis=0) ^ q_words[cand_q])
        return cand_q + first, rows, dist
