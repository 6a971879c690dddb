"""The bulk path for ``te`` list files (``PackedUpserts``) against the line-by-line path.

A list file in python-threatexchange's format is parsed in vectorised blocks and applied as a
diff; every other source goes entry by entry. Both must leave the store in the same state with
the same counts, skip the same lines for the same reasons and fail on the same line.
"""

from __future__ import annotations

import gzip
import random
from collections import Counter
from pathlib import Path

import pytest

from uploadscan import SyncError
from uploadscan.store._lists import BatchResult, ListKind
from uploadscan.store._packed import PackedUpserts
from uploadscan.store._store import Store
from uploadscan.sync._filelines import file_digest
from uploadscan.sync._files import FileSource


def _pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _md5(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _messy_file(rng: random.Random, n: int) -> bytes:
    """Mostly ``pdq <hex>`` lines (the bulk shape) with every oddity the grammar allows."""
    shared = _md5(rng)
    dup = _pdq(rng)
    lines = ["\ufeff# list with a BOM", ""]
    for i in range(n):
        kind = rng.random()
        if kind < 0.70:
            lines.append(f"pdq {_pdq(rng)}")
        elif kind < 0.75:
            lines.append(f"pdq {_pdq(rng).upper()}")
        elif kind < 0.80:
            lines.append(f"pdq {_pdq(rng)}\r")
        elif kind < 0.85:
            lines.append(_pdq(rng))  # bare: pdq by length
        elif kind < 0.88:
            lines.append(f"md5 {_md5(rng)}")
        elif kind < 0.90:
            lines.append(_md5(rng))  # bare: md5 by length
        elif kind < 0.92:
            lines.append(f"video_md5 {_md5(rng)}")
        elif kind < 0.93:
            lines.append(f"url https://example.invalid/{i}")
        elif kind < 0.94:
            lines.append(f"pdq {'0' * 64}")  # degenerate: skipped and counted
        elif kind < 0.95:
            lines.append(f"  pdq\t{_pdq(rng)}  ")
        elif kind < 0.96:
            lines.append(f"photo_md5 {shared}" if i % 2 else f"video_md5 {shared}")
        elif kind < 0.97:
            lines.append(f"pdq {dup}")
        else:
            lines.append("# comment")
    return ("\n".join(lines)).encode("utf-8")  # no final newline


def _state(store: Store) -> dict[tuple[str, str], tuple[tuple[str, ...], str | None]]:
    return {(e.hash_type, e.value): (e.labels, e.external_id) for e in store.list_entries("l")}


def _apply_both(
    path: Path, stores: tuple[Store, Store], options: dict[str, str] | None = None
) -> tuple[BatchResult, BatchResult, Counter[str], Counter[str]]:
    """Apply ``path`` to the first store by the bulk path, to the second line by line."""
    source = FileSource(path, options)
    (batch,) = source.fetch(None)
    assert isinstance(batch.upserts, PackedUpserts)
    assert sum(r.codes.shape[0] for r in batch.upserts.runs() if r.codes.shape[0] >= 16) > 0
    bulk = stores[0].apply_batch("l", batch.upserts, replace=True)
    reference_skips: Counter[str] = Counter()
    with path.open("rb") as f:
        digests = [(path, file_digest(f, path))]
    plain = stores[1].apply_batch("l", source._parse_all(digests, reference_skips), replace=True)
    return bulk, plain, batch.skipped, reference_skips


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Store, Store]:
    a = Store.open(tmp_path / "a.sqlite3")
    b = Store.open(tmp_path / "b.sqlite3")
    for s in (a, b):
        s.add_list("l", kind=ListKind.BLOCK)
    return a, b


@pytest.mark.parametrize("compressed", [False, True])
def test_bulk_path_matches_line_by_line(
    tmp_path: Path, stores: tuple[Store, Store], compressed: bool
) -> None:
    rng = random.Random(7)
    path = tmp_path / ("list.txt.gz" if compressed else "list.txt")
    for round_ in range(3):  # first sync, then two changed files (adds, removals, relabels)
        data = _messy_file(rng, 3000)
        path.write_bytes(gzip.compress(data) if compressed else data)
        bulk, plain, skips, reference_skips = _apply_both(path, stores)
        assert bulk == plain, round_
        assert skips == reference_skips
        assert skips["pdq degenerate (would match near-blank media)"] > 0
        assert _state(stores[0]) == _state(stores[1])
        assert len(_state(stores[0])) > 2000


def test_bulk_path_relabels_and_keeps_the_last_duplicate(
    tmp_path: Path, stores: tuple[Store, Store]
) -> None:
    rng = random.Random(3)
    values = [_md5(rng) for _ in range(100)]
    path = tmp_path / "list.txt"
    path.write_text("".join(f"md5 {v}\n" for v in values))
    _apply_both(path, stores)
    # The same values as video digests now (a label change), one of them listed twice with
    # the plain type last: the last line wins.
    path.write_text("".join(f"video_md5 {v}\n" for v in values) + f"photo_md5 {values[0]}\n")
    bulk, plain, _, _ = _apply_both(path, stores)
    assert bulk == plain
    assert (bulk.added, bulk.updated, bulk.removed) == (0, 99, 0)
    state = _state(stores[0])
    assert state == _state(stores[1])
    assert state["md5", values[0]] == ((), None)
    assert state["md5", values[1]] == (("video",), None)


def test_bad_line_inside_a_bulk_block_is_named_and_nothing_is_applied(
    tmp_path: Path, stores: tuple[Store, Store]
) -> None:
    rng = random.Random(5)
    good = [f"pdq {_pdq(rng)}" for _ in range(200)]
    path = tmp_path / "list.txt"
    path.write_text("\n".join(good) + "\n")
    _apply_both(path, stores)
    before = _state(stores[0])
    broken = [f"pdq {_pdq(rng)}" for _ in range(200)]
    broken[57] = "pdq " + "g" + broken[57][5:]  # same length, not hex
    broken[120] = "pdq " + "0" * 63  # would be the second error
    path.write_text("\n".join(broken) + "\n")
    (batch,) = FileSource(path).fetch(None)
    with pytest.raises(SyncError, match=rf"{path.name}, line 58: pdq hash must be 64 hex"):
        stores[0].apply_batch("l", batch.upserts, replace=True)
    assert _state(stores[0]) == before
