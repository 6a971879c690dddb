"""python-threatexchange's one-hash-per-line format, parsed in bulk into ``PackedRun``s.

A million ``pdq <hex>`` lines parsed one by one (split, validate, popcount, build an object)
cost ~15 s. Real list files are almost entirely lines of one shape, so each block of lines is
handled with numpy: group the lines by length, take the first line of a length as the shape
(``<name> `` prefix + hex of the type's length, or a bare hash), and check every line of that
length against it at once, decoding the hex through a lookup table. Lines of any other shape,
comments, CRLF oddities or errors go through ``TeFormat.record``, the per-line code the
streaming parser uses too, in file order, so every error still names its line and the first
malformed line is the one reported. Only hash types that keep the base hex ``validate`` take
the bulk path; listability is checked with the type's ``listable_mask``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from .. import hashtypes
from .._errors import UploadScanError
from ..store._packed import PackedRun
from ._base import map_signal_type
from ._entry_builder import DEGENERATE, EntryBuilder
from ._filelines import Lines

__all__ = ["TeFormat", "TeRecord", "te_runs"]

# (hash_type, value, labels), or None for a line that holds no entry (blank, comment, skip).
TeRecord = tuple[str, str, tuple[str, ...]] | None
_HEX = re.compile(r"[0-9a-fA-F]+")

_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i
_MIN_GROUP = 16  # lines of one length worth a vectorised pass
_MAX_SHAPES = 3  # prefixes tried per length


class TeFormat:
    """The ``te`` line grammar with one file source's options (``bare_type``, extra labels)."""

    def __init__(self, bare_type: str, extra_labels: tuple[str, ...]) -> None:
        self.bare_type = bare_type
        self.extra_labels = extra_labels
        self._mapping: dict[str, tuple[str, tuple[str, ...]] | None] = {}

    def record(self, line: str, lines: Lines, builder: EntryBuilder) -> TeRecord:
        """One line as (hash_type, raw value, labels); None if it holds no entry."""
        text = line.strip()
        if not text or text[0] == "#":
            return None
        parts = text.split()
        if len(parts) == 1:
            return self._bare_type(parts[0], lines), parts[0], self.extra_labels
        if len(parts) != 2:
            raise lines.error(
                f"expected '<signal_type> <hash>' or a bare hash, got {len(parts)} fields"
            )
        name, value = parts
        mapped = self._map(name)
        if mapped is None:
            builder.skipped[f"{name} (not a hash type uploadscan matches)"] += 1
            return None
        return mapped[0], value, self._labels(mapped[1])

    def shape(self, prefix: bytes, hex_length: int) -> tuple[str, tuple[str, ...]] | None:
        """Hash type and labels of lines ``<prefix><hex_length hex digits>`` if they may be
        parsed in bulk (the type checks values as plain hex); None otherwise. Raises like
        ``record`` for a name nobody knows."""
        try:
            name = prefix.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not name:
            bare = hashtypes.get(self.bare_type)
            hash_type = {bare.hex_length: bare.name, 64: "pdq", 32: "md5"}.get(hex_length)
            if hash_type is None:
                return None
            labels = self.extra_labels
        else:
            mapped = self._map(name[:-1])
            if mapped is None:
                return None
            hash_type, labels = mapped[0], self._labels(mapped[1])
        ht = hashtypes.get(hash_type)
        return (hash_type, labels) if ht.plain_hex and ht.hex_length == hex_length else None

    def _map(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        if name not in self._mapping:
            self._mapping[name] = map_signal_type(name)
        return self._mapping[name]

    def _labels(self, own: tuple[str, ...]) -> tuple[str, ...]:
        return own + self.extra_labels if own else self.extra_labels

    def _bare_type(self, value: str, lines: Lines) -> str:
        if not _HEX.fullmatch(value):
            shown = repr(value) if len(value) <= 40 else repr(value[:37] + "...")
            raise lines.error(f"{shown} is not a hex hash")
        bare = hashtypes.get(self.bare_type)
        if len(value) == bare.hex_length:
            return bare.name
        if len(value) == 64:
            return "pdq"
        if len(value) == 32:
            return "md5"
        raise lines.error(
            f"cannot tell the hash type of a bare {len(value)}-character hash; write "
            "'<type> <hash>' or set bare_type"
        )


def te_runs(
    lines: Lines, builder: EntryBuilder, fmt: TeFormat, seq_base: int
) -> Iterator[PackedRun]:
    """Every entry of the rest of ``lines`` as runs; ``seq`` is ``seq_base`` + line number."""
    for first, block in lines.blocks():
        arr = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero(arr == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        stops = ends.copy()
        crlf = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
        stops[crlf] -= 1
        lengths = stops - starts
        bulk = np.zeros(ends.shape[0], dtype=np.bool_)
        sizes, counts = np.unique(lengths, return_counts=True)
        for size in sizes[counts >= _MIN_GROUP].tolist():
            rows = np.flatnonzero(lengths == size)
            yield from _bulk_rows(arr, starts, rows, size, bulk, builder, fmt, seq_base + first)
        slow = np.flatnonzero(~bulk)
        if slow.shape[0]:
            yield from _slow_rows(lines, block, starts, ends, slow, first, fmt, builder, seq_base)
        lines.lineno = first + ends.shape[0] - 1


def _bulk_rows(
    arr: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.intp],
    rows: npt.NDArray[np.intp],
    size: int,
    bulk: npt.NDArray[np.bool_],
    builder: EntryBuilder,
    fmt: TeFormat,
    seq0: int,
) -> Iterator[PackedRun]:
    """Lines ``rows`` (all ``size`` bytes long) that share the shape of a sample line."""
    grid = arr[starts[rows][:, None] + np.arange(size)]
    todo = np.ones(rows.shape[0], dtype=np.bool_)
    for _ in range(_MAX_SHAPES):
        left = np.flatnonzero(todo)
        if not left.shape[0]:
            return
        sample = grid[left[0]].tobytes()
        prefix_len = sample.find(b" ") + 1  # 0: a bare hash
        todo[left[0]] = False  # whatever happens, this sample is not tried again
        try:
            shape = fmt.shape(sample[:prefix_len], size - prefix_len)
        except UploadScanError:
            shape = None  # the line-by-line pass reports it at its line
        if shape is None:
            continue
        hash_type, labels = shape
        sub = grid[left]
        nibbles = _NIBBLE[sub[:, prefix_len:]]
        ok = (nibbles != 255).all(axis=1)
        if prefix_len:
            ok &= (sub[:, :prefix_len] == grid[left[0], :prefix_len]).all(axis=1)
        hits = left[ok]
        todo[hits] = False
        bulk[rows[hits]] = True
        nibbles = nibbles[ok]
        codes = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
        listable = hashtypes.get(hash_type).listable_mask(codes)
        degenerate = int((~listable).sum())
        if degenerate:
            builder.skipped[DEGENERATE.format(hash_type)] += degenerate
        seq = seq0 + rows[hits][listable].astype(np.int64)
        yield PackedRun(hash_type, labels, np.ascontiguousarray(codes[listable]), seq)


def _slow_rows(
    lines: Lines,
    block: bytes,
    starts: npt.NDArray[np.intp],
    ends: npt.NDArray[np.intp],
    slow: npt.NDArray[np.intp],
    first: int,
    fmt: TeFormat,
    builder: EntryBuilder,
    seq_base: int,
) -> Iterator[PackedRun]:
    """The remaining lines one by one, in file order, grouped into runs afterwards."""
    found: dict[tuple[str, tuple[str, ...]], tuple[list[bytes], list[int]]] = {}
    for i in slow.tolist():
        lines.lineno = first + i
        record = fmt.record(lines.decode(block[starts[i] : ends[i] + 1]), lines, builder)
        if record is None:
            continue
        hash_type, value, labels = record
        canonical = builder.canonical(hash_type, value)
        if canonical is None:
            continue
        values, seqs = found.setdefault((hash_type, labels), ([], []))
        ht = hashtypes.get(hash_type)
        values.append(bytes.fromhex(canonical) if ht.plain_hex else ht.to_bytes(canonical))
        seqs.append(seq_base + first + i)
    for (hash_type, labels), (values, seqs) in found.items():
        codes = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), -1)
        yield PackedRun(hash_type, labels, codes, np.array(seqs, dtype=np.int64))
