"""The small side of a retro join: the entries a version range added, ready for a stream.

A retro run asks, for millions of recorded PDQ hashes, "is this within ``radius`` bits of any
of the few thousand codes the syncs added?". Almost every answer is no, so the cost is what it
takes to say no. ``HammingIndex`` answers the scan-time question (a few queries against a big
list) by probing, per query, every bucket within a substring radius: 272 probes per query at
radius 31. Here the sides are swapped in size, so the probing is moved to the small side, once:

- The 256 bits are cut into 16 disjoint 16-bit substrings (byte ``t`` with byte ``t + 16``, so
  neighbouring DCT rows do not share a key). Pigeonhole: two codes within ``r`` bits have, in
  some table ``t``, substrings within ``radii(16, r)[t]`` bits (1 at radius 31).
- Each added code is entered in table ``t`` under every key within that radius of its own
  substring (17 keys at radius 31): a CSR table of 65,536 buckets per substring.
- A recorded hash then costs one bucket read per table (16, not 272) and a full-distance check
  of the few codes in those buckets (about 42 per hash for 10 k added codes, all in cache).

Exact: every pair within the radius shares a bucket in some table and every candidate is
checked at full distance, so the hits are brute force's. When the expanded tables would be
too large (a first retro over a million entries, a very wide radius), the added codes go into
a ``HammingIndex`` instead, which is exact too.

MD5 and SHA-256 of the range are sorted arrays; a recorded digest is looked up with
``searchsorted``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from math import comb
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .._errors import ConfigError
from ..index import _mih as mih
from ..index._hamming import HammingIndex
from ..store._store import Store

__all__ = ["Delta", "DeltaMatcher", "load_delta"]

PDQ_BYTES = 32
SUBSTRINGS = 16
SUBSTRING_BITS = 16
#: Largest expanded table (entries over all 16 tables) built before using a ``HammingIndex``:
#: 4 bytes each, so 256 MB at most; 10 k added codes at radius 31 take 2.7 M (11 MB).
MAX_EXPANDED_ENTRIES = 64 << 20
#: Recorded hashes checked per vectorised step: about 42 candidates each at 10 k added codes,
#: so a step's largest array is about 5 MB: large enough that numpy's per-call cost vanishes,
#: small enough to be reused by the allocator instead of mapped afresh (page faults).
STEP_ROWS = 1 << 12


@dataclass(frozen=True)
class Delta:
    """The entries a version range added, as arrays a worker can index (the small side)."""

    since: int
    upto: int
    token: str
    radius: int
    pdq_ids: npt.NDArray[np.int64]
    pdq_codes: npt.NDArray[np.uint8]
    md5: npt.NDArray[np.void]
    sha256: npt.NDArray[np.void]
    digest_ids: frozenset[int] = frozenset()

    @property
    def size(self) -> int:
        return int(self.pdq_ids.shape[0] + self.md5.shape[0] + self.sha256.shape[0])

    @property
    def entry_ids(self) -> frozenset[int]:
        return frozenset(self.pdq_ids.tolist()) | self.digest_ids


def as_rows(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
    """(n, width) bytes as n opaque values that compare and sort as whole rows."""
    codes = np.ascontiguousarray(codes)
    return codes.view(np.dtype((np.void, codes.shape[1]))).ravel()


def load_delta(store: Store, since: int, upto: int, radius: int) -> Delta:
    """What the store gained between ``since`` (exclusive) and ``upto`` (inclusive)."""
    if not 0 <= since <= upto:
        raise ConfigError(f"need 0 <= since ({since}) <= upto ({upto})")
    pdq_ids, pdq_codes, _ = store.changes("pdq", since, upto)
    md5_ids, md5_codes, _ = store.changes("md5", since, upto)
    sha_ids, sha_codes, _ = store.changes("sha256", since, upto)
    return Delta(
        since=since,
        upto=upto,
        token=f"{store.store_id}:{since}:{upto}:{radius}",
        radius=radius,
        pdq_ids=pdq_ids,
        pdq_codes=np.ascontiguousarray(pdq_codes).reshape(-1, PDQ_BYTES),
        md5=np.sort(as_rows(md5_codes.reshape(-1, 16))),
        sha256=np.sort(as_rows(sha_codes.reshape(-1, 32))),
        digest_ids=frozenset(md5_ids.tolist()) | frozenset(sha_ids.tolist()),
    )


def substring_keys(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """(n, 16) keys: table ``t`` holds byte ``t`` (low) and byte ``t + 16`` (high)."""
    keys = codes[:, SUBSTRINGS:].astype(np.int64)
    keys <<= 8
    keys |= codes[:, :SUBSTRINGS]
    return keys


def expanded_entries(n: int, radius: int) -> int:
    """Entries of the expanded tables for ``n`` codes at ``radius`` (see the module docstring)."""
    per_code = sum(
        sum(comb(SUBSTRING_BITS, k) for k in range(min(r, SUBSTRING_BITS) + 1))
        for r in mih.radii(SUBSTRINGS, radius)
        if r >= 0
    )
    return n * per_code


class _ExpandedTables:
    """Every added code under every key within its table's radius; see the module docstring."""

    def __init__(self, codes: npt.NDArray[np.uint8], radius: int) -> None:
        keys = substring_keys(codes)
        buckets = 1 << SUBSTRING_BITS
        # Small row numbers keep the tables in cache: they are read at random, ~42 per hash.
        row_type = np.uint16 if codes.shape[0] <= 1 << 16 else np.int32
        offsets = [np.zeros(1, np.int64)]
        rows = []
        total = 0
        for table, table_radius in enumerate(mih.radii(SUBSTRINGS, radius)):
            if table_radius < 0:  # pigeonhole needs no probe of this table: leave it empty
                offsets.append(np.full(buckets, total, np.int64))
                continue
            masks = mih.xor_masks(SUBSTRING_BITS, table_radius)
            expanded = (keys[:, table, None] ^ masks[None, :]).ravel().astype(np.uint16)
            order = np.argsort(expanded, kind="stable")  # a radix sort for 16-bit keys
            rows.append((order // masks.shape[0]).astype(row_type))
            counts = np.bincount(expanded, minlength=buckets)
            offsets.append(np.cumsum(counts) + total)
            total += expanded.shape[0]
        # 16 * 65536 + 1 offsets: bucket b of table t at t * 65536 + b.
        self.offsets = np.concatenate(offsets).astype(np.int32 if total < 1 << 31 else np.int64)
        self.rows = np.concatenate(rows) if rows else np.empty(0, row_type)
        self.words = mih.as_words(codes)
        self.radius = radius
        self._table_base = np.arange(SUBSTRINGS, dtype=np.int64) * buckets

    def hits(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        out = np.zeros(codes.shape[0], bool)
        for start in range(0, codes.shape[0], STEP_ROWS):
            part = codes[start : start + STEP_ROWS]
            found = self._step(part)
            out[start + found] = True
        return out

    def _step(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
        """Rows of ``codes`` within the radius of some added code."""
        slots = substring_keys(codes)
        slots += self._table_base
        slots = slots.ravel()  # query-major: slot i belongs to query i // 16
        starts = np.take(self.offsets, slots).astype(np.int64)
        counts = np.take(self.offsets, slots + 1) - starts
        live = np.flatnonzero(counts)
        if not live.shape[0]:
            return np.empty(0, np.int64)
        counts = counts[live]
        candidates = np.take(self.rows, mih.expand_ranges(starts[live], counts)).astype(np.intp)
        owner = np.repeat(live >> 4, counts)  # slot // SUBSTRINGS
        xor = np.take(self.words, candidates, axis=0)
        xor ^= np.take(mih.as_words(codes), owner, axis=0)
        found: npt.NDArray[np.int64] = np.unique(owner[mih.within(xor, self.radius)])
        return found


class _IndexedCodes:
    """The added codes in a temporary ``HammingIndex`` file (large deltas, wide radii)."""

    def __init__(self, codes: npt.NDArray[np.uint8], radius: int) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="uploadscan-delta-")
        ids = np.arange(codes.shape[0], dtype=np.int64)
        self._index = HammingIndex.build(codes, ids, Path(self._dir.name) / "delta.idx")
        self.radius = radius

    def hits(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        out = np.zeros(codes.shape[0], bool)
        for start in range(0, codes.shape[0], 1 << 18):  # bounds the hit arrays of one call
            found = self._index.search(codes[start : start + (1 << 18)], self.radius)
            out[start + found.query.astype(np.int64)] = True
        return out

    def close(self) -> None:
        self._dir.cleanup()


class DeltaMatcher:
    """Which recorded hashes are within reach of the delta: built once per worker process
    (``worker_cache``), then fed one vectorised batch of recorded rows after another."""

    def __init__(self, delta: Delta, *, max_expanded: int = MAX_EXPANDED_ENTRIES) -> None:
        self.delta = delta
        codes = np.ascontiguousarray(delta.pdq_codes, np.uint8).reshape(-1, PDQ_BYTES)
        self._pdq: _ExpandedTables | _IndexedCodes | None = None
        if codes.shape[0]:
            small = expanded_entries(codes.shape[0], delta.radius) <= max_expanded
            if small and delta.radius < PDQ_BYTES * 8:
                self._pdq = _ExpandedTables(codes, delta.radius)
            else:
                self._pdq = _IndexedCodes(codes, delta.radius)

    @property
    def wants_pdq(self) -> bool:
        return self._pdq is not None

    @property
    def wants_md5(self) -> bool:
        return bool(self.delta.md5.shape[0])

    @property
    def wants_sha256(self) -> bool:
        return bool(self.delta.sha256.shape[0])

    @property
    def method(self) -> str:
        """How PDQ is matched (for reports): ``expanded``, ``index`` or ``none``."""
        if isinstance(self._pdq, _ExpandedTables):
            return "expanded"
        return "index" if self._pdq is not None else "none"

    def pdq_hits(
        self, codes: npt.NDArray[np.uint8], valid: npt.NDArray[np.bool_] | None = None
    ) -> npt.NDArray[np.bool_]:
        """Per row of ``codes`` (n, 32): within the radius of an added PDQ code (rows where
        ``valid`` is False never hit: they hold no hash)."""
        if self._pdq is None or not codes.shape[0]:
            return np.zeros(codes.shape[0], bool)
        if valid is not None and not valid.all():
            out = np.zeros(codes.shape[0], bool)
            rows = np.flatnonzero(valid)
            out[rows] = self._pdq.hits(np.ascontiguousarray(codes[rows]))
            return out
        return self._pdq.hits(np.ascontiguousarray(codes))

    def digest_hits(
        self, kind: str, codes: npt.NDArray[np.uint8], valid: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """Per row: ``kind`` ("md5" or "sha256") is one the range added."""
        added = self.delta.md5 if kind == "md5" else self.delta.sha256
        if not added.shape[0] or not codes.shape[0]:
            return np.zeros(codes.shape[0], bool)
        values = as_rows(codes)
        at = np.searchsorted(added, values)
        at[at == added.shape[0]] = 0
        found: npt.NDArray[np.bool_] = valid & (added[at] == values)
        return found

    def close(self) -> None:
        if isinstance(self._pdq, _IndexedCodes):
            self._pdq.close()
