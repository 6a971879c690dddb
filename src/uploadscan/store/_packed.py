"""Plain upserts packed as arrays: the bulk path from a big list file into the store.

A million ``EntryUpsert`` objects cost more to build, validate and stage one by one than the
whole write to SQLite. Most list files are nothing but ``(hash_type, value)`` lines sharing a
few label sets, so a parser that recognises that shape hands the store ``PackedUpserts``
instead: per hash type, the decoded values as one (n, nbytes) uint8 array, a label set per
row, and each row's position in the source (so "the last upsert of a value wins" still holds).
The store then diffs the batch against the list's live entries with sorted-array searches and
writes only what changed.

Rows are each value's stored form (``HashType.to_bytes``): the hex's bytes for most types, the
``.tmk`` file for TMK (a ``tmk <HASH_TMK text>`` line of a python-threatexchange file).

``PackedUpserts`` is still an ``Iterable[EntryUpsert]`` (yielding in source order), so any
consumer that does not know the fast path sees the same entries as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .._errors import InvalidHashError
from ..hashing._protocol import HashType
from ..hashing._registry import registry
from ._lists import EntryUpsert

__all__ = [
    "PackedGroup",
    "PackedRun",
    "PackedUpserts",
    "dedupe_sorted",
    "member",
    "row_order",
    "void_rows",
]

Codes = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class PackedRun:
    """Upserts of one hash type and label set: ``codes`` (k, nbytes) uint8 holds canonical
    values already validated and found listable by the producer; ``seq`` (k,) int64 orders
    rows across runs (later wins)."""

    hash_type: str
    labels: tuple[str, ...]
    codes: Codes
    seq: npt.NDArray[np.int64]


@dataclass(frozen=True)
class PackedGroup:
    """One hash type of a batch, ready to diff: ``codes`` sorted (bytewise) and unique,
    ``label_class`` (n,) indexes ``labels_json`` (the store's encoding of each label set)."""

    codes: Codes
    label_class: npt.NDArray[np.int32]
    labels_json: list[str]


class PackedUpserts:
    """Upserts without external id or extra, produced lazily by ``produce`` (called once).

    Parsing happens on first use, so a malformed source still fails inside
    ``Store.apply_batch`` before the store is locked, exactly like a streamed iterator.
    """

    def __init__(self, produce: Callable[[], Iterator[PackedRun]]) -> None:
        self._produce: Callable[[], Iterator[PackedRun]] | None = produce
        self._runs: list[PackedRun] = []

    def runs(self) -> list[PackedRun]:
        if self._produce is not None:
            produce, self._produce = self._produce, None
            self._runs = [r for r in produce() if r.codes.shape[0]]
        return self._runs

    def __iter__(self) -> Iterator[EntryUpsert]:
        runs = self.runs()
        if not runs:
            return
        seq = np.concatenate([r.seq for r in runs])
        which = np.concatenate([np.full(r.seq.shape[0], i, np.int32) for i, r in enumerate(runs)])
        row = np.concatenate([np.arange(r.seq.shape[0]) for r in runs])
        types = [registry.get(r.hash_type) for r in runs]
        decode = [bytes.hex if t.plain_hex else t.from_bytes for t in types]
        for k in np.argsort(seq, kind="stable").tolist():
            run = runs[which[k]]
            value = decode[which[k]](run.codes[row[k]].tobytes())
            yield EntryUpsert(run.hash_type, value, run.labels)

    def groups(self, list_name: str) -> dict[str, PackedGroup]:
        """Per hash type: rows checked again against the type, sorted, last-wins deduped."""
        by_type: dict[str, list[PackedRun]] = {}
        for run in self.runs():
            by_type.setdefault(run.hash_type, []).append(run)
        out = {}
        for hash_type, runs in by_type.items():
            out[hash_type] = _group(list_name, hash_type, runs)
        return out


def _group(list_name: str, hash_type: str, runs: list[PackedRun]) -> PackedGroup:
    ht = registry.get(hash_type)
    nbytes = ht.code_bytes
    labels_json: dict[str, int] = {}
    classes = []
    for run in runs:
        if run.codes.ndim != 2 or run.codes.shape[1] != nbytes or run.codes.dtype != np.uint8:
            raise InvalidHashError(
                f"list {list_name!r}: {hash_type} values must be {nbytes} bytes each"
            )
        encoded = json.dumps(sorted(set(run.labels)))
        cls = labels_json.setdefault(encoded, len(labels_json))
        classes.append(np.full(run.codes.shape[0], cls, np.int32))
    codes = np.concatenate([r.codes for r in runs])
    seq = np.concatenate([r.seq for r in runs])
    label_class = np.concatenate(classes)
    _check(list_name, ht, codes)
    by_seq = np.argsort(seq, kind="stable")
    codes, label_class = codes[by_seq], label_class[by_seq]
    order = row_order(codes)
    codes, label_class = codes[order], label_class[order]
    keep = dedupe_sorted(codes)
    return PackedGroup(codes[keep], label_class[keep], list(labels_json))


def _check(list_name: str, ht: HashType, codes: Codes) -> None:
    """The store's own check of every value, whoever produced the batch."""
    bad = np.flatnonzero(~ht.listable_mask(codes))
    if not ht.plain_hex:  # rows are the type's to_bytes, which need not be the hex's bytes
        for row in codes:
            value = ht.from_bytes(row.tobytes())
            if ht.to_bytes(ht.validate(value)) != row.tobytes():
                shown = ht.short_form(value)
                raise InvalidHashError(f"list {list_name!r}: {ht.name} {shown} is not canonical")
    if bad.shape[0]:
        value = ht.from_bytes(codes[bad[0]].tobytes())
        try:
            ht.check_listable(value)
            message = "cannot be listed"
        except InvalidHashError as exc:
            message = str(exc)
        raise InvalidHashError(f"list {list_name!r} ({ht.name} {value}): {message}")


def void_rows(codes: Codes) -> npt.NDArray[np.void]:
    """Each row as one opaque scalar; numpy compares these bytewise, like SQLite's BLOBs."""
    codes = np.ascontiguousarray(codes)
    return codes.view(f"V{codes.shape[1]}").ravel()


def row_order(codes: Codes) -> npt.NDArray[np.intp]:
    """Stable bytewise sort order of the rows of ``codes``.

    Hash values are close to random, so sorting on the first 8 bytes as one big-endian
    integer settles the order almost always; only if two rows share those bytes does it fall
    back to the (several times slower) opaque-row sort.
    """
    n, nbytes = codes.shape
    if n < 2:
        return np.arange(n)
    if nbytes >= 8:
        first = np.ascontiguousarray(codes[:, :8]).view(">u8").ravel()
        order = np.argsort(first, kind="stable")
        head = first[order]
        if not (head[1:] == head[:-1]).any():
            return order
    return np.argsort(void_rows(codes), kind="stable")


def dedupe_sorted(codes: Codes) -> npt.NDArray[np.bool_]:
    """For sorted rows: True on the last row of each run of equal rows."""
    keep = np.ones(codes.shape[0], dtype=np.bool_)
    if codes.shape[0] > 1:
        keep[:-1] = (codes[1:] != codes[:-1]).any(axis=1)
    return keep


def member(haystack: Codes, needles: Codes) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
    """For each row of ``needles``: is it in ``haystack`` (sorted, unique), and where."""
    if haystack.shape[0] == 0 or needles.shape[0] == 0:
        return np.zeros(needles.shape[0], np.bool_), np.zeros(needles.shape[0], np.intp)
    hay, probe = void_rows(haystack), void_rows(needles)
    pos = np.minimum(np.searchsorted(hay, probe), hay.shape[0] - 1)
    return hay[pos] == probe, pos
