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
- Rows are stored sorted by the first substring, so table 0 needs no position array, and row
  positions take 2 or 3 bytes when ``n`` allows: memory is what limits the number of tables.

The number and width of the substrings are chosen from ``n`` when the file is built; the radius
is a query-time argument. When a radius is so large that probing would cost more than reading
every code, the search scans instead, so exactness never depends on the build parameters.
Small lists get a flat file and are always scanned. The file format is ``_mmapfile``'s container
(checksummed header, memory-mapped sections, atomic replace); building blocks live in ``_mih``.

API (kept stable for the rest of the package):
- ``SearchHits``: parallel arrays ``query`` (int32, row of the query), ``ids`` (int64), ``distance``
  (int32); every indexed code within ``max_distance`` of a query, nothing beyond.
- ``HammingIndex.build(codes, ids, path)``: write an index file for (n, nbytes) uint8 ``codes``
  with int64 ``ids``; written to a temporary file and renamed into place. Keywords
  ``design_distance`` and ``substrings`` tune the layout (never the results).
- ``HammingIndex.open(path)``: memory-map an index file (``IndexFileError`` if missing/damaged).
- ``index.search(queries, max_distance) -> SearchHits``; ``len(index)``; ``index.nbytes``;
  ``index.code_bytes``; ``index.substring_bits``; ``index.verify()`` (full checksum read).
- ``brute_force_search(codes, ids, queries, max_distance) -> SearchHits`` for small sets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from uploadscan._errors import ConfigError, IndexFileError, InvalidHashError
from uploadscan.index import _mih as mih
from uploadscan.index._mmapfile import MappedFile, SectionSpec, SectionWriter, map_file

__all__ = ["HammingIndex", "SearchHits", "brute_force_search"]

_KIND = "hamming"
_VERSION = 1
_PERM_SEED = 0x5D1E_2024  # only used at build time; the permutation itself is stored in the file
_CHUNK_CANDIDATES = 1 << 13  # candidates per batch step: bigger steps fall out of cache


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
    q, rows, dist = mih.scan(mih.as_words(codes), mih.as_words(queries), int(max_distance))
    return SearchHits(q.astype(np.int32), np.asarray(ids, np.int64)[rows], dist)


@dataclass(frozen=True, slots=True)
class _ProbePlan:
    """Everything one radius needs, precomputed once: probe ``i`` reads substring ``table[i]``
    of the query, flips the bits in ``xor[i]`` and finds its bucket at ``base[i]`` onwards."""

    table: npt.NDArray[np.intp]
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
        self._weights = mih.key_weights(s["perm"], self._widths)
        bit_values = self._weights.reshape(self.code_bytes, 8, -1).astype(np.int64)
        all_bytes = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)
        self._byte_keys = np.einsum("vk,bkt->bvt", all_bytes, bit_values)
        self._byte_index = np.arange(self.code_bytes)
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
        substrings: int | None = None,
    ) -> HammingIndex:
        """Write an index of ``codes`` (n, nbytes) uint8 with one int64 id per row to ``path``.

        ``design_distance`` (default: 31 for 256-bit codes, bits/8 otherwise) only tunes the
        layout; any radius can be searched exactly later. ``substrings`` overrides the chosen
        number of substring tables (0: a flat file that is always scanned).
        """
        _check_codes(codes, None, "codes")
        ids = np.asarray(ids)
        if ids.shape != (codes.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
            raise ConfigError(f"ids must be {codes.shape[0]} integers, got {ids.dtype} {ids.shape}")
        n, code_bytes = codes.shape
        if n >= 1 << 32:
            raise ConfigError(f"{n} codes is more than one index file can hold (2**32 - 1)")
        bits = code_bytes * 8
        design = (31 if bits == 256 else bits // 8) if design_distance is None else design_distance
        _check_distance(design)
        if substrings is None:
            widths = mih.choose_widths(n, bits, design)
        elif substrings == 0 or -(-bits // mih.MAX_WIDTH) <= substrings <= bits:
            widths = mih.split(bits, substrings) if substrings else ()
        else:
            raise ConfigError(f"substrings must be 0 or {-(-bits // mih.MAX_WIDTH)}..{bits}")
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
            keys = mih.subkeys(codes, mih.key_weights(perm, widths))
            order = mih.stable_argsort(keys[:, 0])
            writer.append("codes", np.take(codes, order, axis=0))
            writer.append("ids", np.take(ids, order))
            keys = np.take(keys, order, axis=0)
            for table, width in enumerate(widths):
                column = keys[:, table]
                counts = np.bincount(column, minlength=2**width)
                offsets = np.concatenate(([0], np.cumsum(counts))) + table * n
                writer.append("offsets", offsets)
                if table:
                    positions = mih.stable_argsort(column)
                    writer.append("pos_lo", positions if pos_lo == "<u4" else positions & 0xFFFF)
                    if n > 1 << 16 and pos_lo == "<u2":
                        writer.append("pos_hi", positions >> 16)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, populate: bool = False) -> HammingIndex:
        """Memory-map ``path``; raises ``IndexFileError`` if it is missing or damaged.

        ``populate`` maps every page at open (about 0.3 s for a 10 M index already in the page
        cache) so a long-lived worker's first queries do not pay page faults (up to ~15 ms).
        """
        mapped = map_file(path, _KIND, frozenset({_VERSION}), populate=populate)
        try:
            index = cls(mapped)
            index._check_structure()
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFileError(f"index file {path} is damaged ({exc}); rebuild it") from exc
        return index

    def _check_structure(self) -> None:
        """Cheap consistency checks (a few values, never a whole section)."""
        bits = self.code_bytes * 8
        if self.code_bytes % 8 or self._mapped.sections["perm"].shape != (bits,):
            raise ValueError("code length and permutation disagree")
        if sorted(self._mapped.sections["perm"].tolist()) != list(range(bits)):
            raise ValueError("the bit permutation is not a permutation")
        if self._ids.shape != (self._n,) or any(not 0 < w <= mih.MAX_WIDTH for w in self._widths):
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
    def substring_bits(self) -> tuple[int, ...]:
        """Width of each substring table; empty for a flat file."""
        return self._widths

    @property
    def nbytes(self) -> int:
        """Size of the mapped file in bytes."""
        return self._mapped.size

    def _plan(self, max_distance: int) -> _ProbePlan:
        plan = self._plans.get(max_distance)
        if plan is not None:
            return plan
        m = len(self._widths)
        probes, candidates = mih.probe_cost(self._widths, max_distance, self._n) if m else (0, 0.0)
        cost = mih.probing_cost(probes, candidates)
        tables, xors = [np.empty(0, np.intp)], [np.empty(0, np.int64)]
        scan = m == 0 or max_distance >= self.code_bytes * 8 or cost >= mih.scan_cost(self._n)
        if not scan:
            for table, radius in enumerate(mih.radii(m, max_distance)):
                if radius >= 0:
                    masks = mih.xor_masks(self._widths[table], radius)
                    tables.append(np.full(masks.shape[0], table, np.intp))
                    xors.append(masks)
        probe_table = np.concatenate(tables)
        plan = _ProbePlan(
            table=probe_table,
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
        q_words = mih.as_words(queries)
        try:
            if plan.scan:
                q, rows, dist = mih.scan(self._words, q_words, r)
            else:
                step = max(1, int(_CHUNK_CANDIDATES / plan.expected_candidates))
                parts = [
                    self._probe(queries[i : i + step], q_words[i : i + step], plan, r, i)
                    for i in range(0, queries.shape[0], step)
                ]
                q, rows, dist = (np.concatenate(x) for x in zip(*parts, strict=True))
            return SearchHits(q.astype(np.int32), np.take(self._ids, rows), dist)
        except (IndexError, ValueError) as exc:  # offsets/positions that point nowhere
            raise IndexFileError(f"index file {self.path} is damaged ({exc}); rebuild it") from exc

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
        # Substring values by table lookup, one row per byte: no BLAS call (whose thread pool
        # costs milliseconds on a busy machine) for a handful of queries.
        keys = self._byte_keys[self._byte_index, queries].sum(axis=1)[:, plan.table]
        keys ^= plan.xor
        keys += plan.base
        # Probe-major order puts every table-0 candidate first: those are row numbers already.
        slots = keys.T.ravel() if c > 1 else keys.ravel()
        starts = np.take(offsets, slots).astype(np.int64)
        counts = np.take(offsets, slots + 1) - starts
        if counts.shape[0] and (counts.min() < 0 or counts.max() > n):
            raise ValueError("bucket offsets out of order")  # never allocate for garbage
        live = np.flatnonzero(counts)
        counts = counts[live]
        rows = mih.expand_ranges(starts[live], counts)
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
            hit = np.flatnonzero(mih.within(xor, r))
            rows, cand_q = rows[hit], cand_q[hit]
        else:
            xor ^= q_words[0]
            hit = np.flatnonzero(mih.within(xor, r))
            rows, cand_q = rows[hit], np.zeros(hit.shape[0], np.int64)
        if hit.shape[0] > 1:  # a row found through several tables is reported once
            key = cand_q * n + rows
            order = np.argsort(key, kind="stable")
            key = key[order]
            keep = order[np.concatenate(([True], key[1:] != key[:-1]))]
            rows, cand_q = rows[keep], cand_q[keep]
        dist = mih.row_distances(np.take(self._words, rows, axis=0) ^ q_words[cand_q])
        return cand_q + first, rows, dist
