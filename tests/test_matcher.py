"""The matcher: exact against brute force over the store, in sync across versions and processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from uploadscan import ConfigError, InvalidHashError
from uploadscan.index._files import MANIFEST_NAME, IndexFiles
from uploadscan.index._hamming import SearchHits, brute_force_search
from uploadscan.store._lists import EntryUpsert, ListKind
from uploadscan.store._store import Store


def hexes(codes: npt.NDArray[np.uint8]) -> list[str]:
    return [bytes(row).hex() for row in codes]


def pdq_codes(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint8]:
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def near(
    rng: np.random.Generator, codes: npt.NDArray[np.uint8], flips: int
) -> npt.NDArray[np.uint8]:
    """Copies of ``codes`` with exactly ``flips`` random bits flipped in each row."""
    bits = np.unpackbits(codes, axis=1)
    for row in bits:
        row[rng.choice(bits.shape[1], flips, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def as_set(hits: SearchHits) -> set[tuple[int, int, int]]:
    return set(zip(hits.query.tolist(), hits.ids.tolist(), hits.distance.tolist(), strict=True))


def expected(store: Store, hash_type: str, queries: npt.NDArray[np.uint8], r: int) -> set:
    ids, codes = store.snapshot(hash_type)
    return as_set(brute_force_search(codes, ids, queries, r))


def queries_around(
    rng: np.random.Generator, listed: npt.NDArray[np.uint8], n: int
) -> npt.NDArray[np.uint8]:
    """Queries on both sides of the threshold: 30, 31, 32, 33 bits from listed codes, plus noise."""
    pick = listed[rng.integers(0, listed.shape[0], n)]
    parts = [near(rng, pick, d) for d in (0, 30, 31, 32, 33)]
    return np.concatenate([*parts, pdq_codes(rng, n)])


@pytest.fixture
def seed() -> int:
    value = int.from_bytes(os.urandom(4), "little")
    print(f"seed={value}")
    return value


def test_exact_against_brute_force_across_versions(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = Store.open(tmp_path / "store.sqlite3")
    store.add_list("block", kind=ListKind.BLOCK)
    store.add_list("review", kind=ListKind.REVIEW)
    first = pdq_codes(rng, 4000)
    md5s = rng.integers(0, 256, (500, 16), dtype=np.uint8)
    store.apply_batch(
        "block",
        [EntryUpsert("pdq", h) for h in hexes(first[:3000])]
        + [EntryUpsert("md5", h) for h in hexes(md5s)],
    )
    store.apply_batch("review", [EntryUpsert("pdq", h) for h in hexes(first[2500:])])
    matcher = IndexFiles(store, tmp_path / "index")
    v_prev = matcher.refresh()
    assert v_prev == store.version()
    manifest = json.loads((tmp_path / "index" / MANIFEST_NAME).read_text())
    assert set(manifest["types"]) == {"md5", "pdq"}
    assert (manifest["types"]["md5"]["kind"], manifest["types"]["pdq"]["kind"]) == (
        "digestset",
        "hamming",
    )
    assert manifest["types"]["pdq"]["count"] == 4500  # 500 values are on both lists

    def check(listed: npt.NDArray[np.uint8]) -> None:
        q = queries_around(rng, listed, 60)
        for r in (0, 31):
            got = matcher.search("pdq", q, r)
            assert as_set(got) == expected(store, "pdq", q, r)
            assert np.all(got.distance <= r)
        mq = np.concatenate(
            [md5s[rng.integers(0, len(md5s), 40)], md5s[-30:], near(rng, md5s[:20], 1)]
        )
        got = matcher.search("md5", mq, 0)
        assert as_set(got) == expected(store, "md5", mq, 0)
        _, live_md5 = store.snapshot("md5")
        assert len(got) == int(np.isin(hexes(mq), hexes(live_md5)).sum()) >= 20 + 30

    check(first)  # t-1: as built
    # t: a small update goes to the delta.
    added = pdq_codes(rng, 300)
    gone = first[:200]
    more_md5 = rng.integers(0, 256, (30, 16), dtype=np.uint8)
    md5s = np.concatenate([md5s, more_md5])
    store.apply_batch(
        "block",
        [EntryUpsert("pdq", h) for h in hexes(added)]
        + [EntryUpsert("md5", h) for h in hexes(more_md5)],
        [("pdq", h) for h in hexes(gone)] + [("md5", h) for h in hexes(md5s[:100])],
    )
    assert matcher.refresh() == store.version() > v_prev
    built = json.loads((tmp_path / "index" / MANIFEST_NAME).read_text())
    assert built["types"]["pdq"]["version"] == v_prev  # served as base + delta
    check(np.concatenate([first, added]))
    # t+1: a big replacement forces a rebuild.
    fresh = pdq_codes(rng, 2500)
    store.apply_batch("review", [EntryUpsert("pdq", h) for h in hexes(fresh)], replace=True)
    assert matcher.refresh() == store.version()
    rebuilt = json.loads((tmp_path / "index" / MANIFEST_NAME).read_text())
    assert rebuilt["types"]["pdq"]["version"] == store.version()
    check(np.concatenate([first, added, fresh]))
    store.close()


def test_delta_path_finds_new_and_drops_removed(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = Store.open(tmp_path / "store.sqlite3")
    store.add_list("l", kind=ListKind.BLOCK)
    base = pdq_codes(rng, 2000)
    store.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(base)])
    matcher = IndexFiles(store, tmp_path / "index", refresh_interval=None)
    matcher.refresh()
    new = pdq_codes(rng, 50)
    store.apply_batch(
        "l", [EntryUpsert("pdq", h) for h in hexes(new)], [("pdq", hexes(base[:1])[0])]
    )
    # Not refreshed yet (auto refresh disabled): the old version is served consistently.
    old = matcher.search("pdq", np.concatenate([new[:5], base[:1]]), 0)
    assert old.query.tolist() == [5]
    matcher.refresh()
    hits = matcher.search("pdq", np.concatenate([near(rng, new[:5], 3), base[:1]]), 31)
    assert sorted(set(hits.query.tolist())) == [0, 1, 2, 3, 4]
    entries = store.entries(hits.ids.tolist())
    assert {e.value for e in entries.values()} == set(hexes(new[:5]))
    # Same answers after the delta is folded into a new base.
    store.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(pdq_codes(rng, 1500))])
    matcher.refresh()
    again = matcher.search("pdq", np.concatenate([near(rng, new[:5], 3), base[:1]]), 31)
    assert sorted(set(again.query.tolist())) == [0, 1, 2, 3, 4]
    store.close()


def test_auto_refresh_picks_up_another_writer(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = Store.open(tmp_path / "store.sqlite3")
    store.add_list("l", kind=ListKind.BLOCK)
    store.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(pdq_codes(rng, 100))])
    matcher = IndexFiles(store, tmp_path / "index", refresh_interval=0.05)
    matcher.refresh()
    new = pdq_codes(rng, 10)
    with Store.open(tmp_path / "store.sqlite3") as writer:
        writer.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(new)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(matcher.search("pdq", new, 0)) < 10:
        time.sleep(0.01)
    assert len(matcher.search("pdq", new, 0)) == 10
    assert matcher.version == store.version()
    store.close()


def test_persistence_round_trip_in_a_new_process(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = Store.open(tmp_path / "store.sqlite3")
    store.add_list("l", kind=ListKind.BLOCK)
    listed = pdq_codes(rng, 3000)
    store.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(listed)])
    matcher = IndexFiles(store, tmp_path / "index")
    matcher.refresh()
    q = queries_around(rng, listed, 30)
    mine = matcher.search("pdq", q, 31)
    np.save(tmp_path / "q.npy", q)
    files_before = sorted(p.name for p in (tmp_path / "index").iterdir())
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        import numpy as np
        from uploadscan.index._files import IndexFiles
        from uploadscan.store._store import Store
        d = Path(sys.argv[1])
        store = Store.open(d / "store.sqlite3")
        m = IndexFiles(store, d / "index")
        m.refresh()
        h = m.search("pdq", np.load(d / "q.npy"), 31)
        print(json.dumps([h.query.tolist(), h.ids.tolist(), h.distance.tolist(), m.version]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    q_, ids, dist, version = json.loads(out.stdout)
    assert (q_, ids, dist) == (mine.query.tolist(), mine.ids.tolist(), mine.distance.tolist())
    assert version == matcher.version
    # The second process reused the index files instead of building its own.
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == files_before
    store.close()


def test_missing_or_corrupt_index_is_rebuilt(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = Store.open(tmp_path / "store.sqlite3")
    store.add_list("l", kind=ListKind.BLOCK)
    listed = pdq_codes(rng, 1000)
    store.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(listed)])
    index_dir = tmp_path / "index"
    IndexFiles(store, index_dir).refresh()
    name = json.loads((index_dir / MANIFEST_NAME).read_text())["types"]["pdq"]["file"]
    data = bytearray((index_dir / name).read_bytes())
    data[:64] = os.urandom(64)
    (index_dir / name).write_bytes(bytes(data))
    q = near(rng, listed[:20], 5)
    fresh = IndexFiles(store, index_dir)
    assert as_set(fresh.search("pdq", q, 31)) == expected(store, "pdq", q, 31)
    (index_dir / name).unlink()
    (index_dir / MANIFEST_NAME).write_text("{not json")
    again = IndexFiles(store, index_dir)
    assert as_set(again.search("pdq", q, 31)) == expected(store, "pdq", q, 31)
    assert json.loads((index_dir / MANIFEST_NAME).read_text())["types"]["pdq"]["count"] == 1000
    store.close()


def test_search_argument_checks(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store.sqlite3")
    matcher = IndexFiles(store, tmp_path / "index")
    assert len(matcher.search("pdq", np.zeros((3, 32), np.uint8), 31)) == 0  # empty store
    with pytest.raises(InvalidHashError):
        matcher.search("pdq", np.zeros((3, 16), np.uint8), 31)
    with pytest.raises(InvalidHashError):
        matcher.search("pdq", np.zeros((3, 32), np.int64), 31)
    with pytest.raises(ConfigError):
        matcher.search("md5", np.zeros((1, 16), np.uint8), 1)
    with pytest.raises(ConfigError):
        matcher.search("pdq", np.zeros((1, 32), np.uint8), -1)
    with pytest.raises(KeyError):
        matcher.search("nosuch", np.zeros((1, 32), np.uint8), 0)
    store.close()


_READER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from uploadscan.index._files import IndexFiles
    from uploadscan.store._store import Store
    d = Path(sys.argv[1])
    stop = d / "stop"
    store = Store.open(d / "store.sqlite3")
    m = IndexFiles(store, d / "index", refresh_interval=0.0)
    generations = [np.load(d / f"gen{i}.npy") for i in range(int(sys.argv[2]))]
    seen, loops = set(), 0
    while not stop.exists():
        for g, codes in enumerate(generations):
            hits = m.search("pdq", codes, 0)
            n = len(set(hits.query.tolist()))
            assert n in (0, codes.shape[0]), (g, n, m.version)
            if n:
                seen.add(g)
        loops += 1
    print(sorted(seen), loops, flush=True)
    """
)


def test_readers_in_other_processes_during_rebuilds(tmp_path: Path, seed: int) -> None:
    """Each generation of entries is added in one batch and removed in one batch, so a reader
    serving any single store version finds either all of a generation or none of it."""
    rng = np.random.default_rng(seed)
    store = Store.open(tmp_path / "store.sqlite3")
    store.add_list("l", kind=ListKind.BLOCK)
    n_gen = 6
    gens = [pdq_codes(rng, 3000) for _ in range(n_gen)]
    for i, g in enumerate(gens):
        np.save(tmp_path / f"gen{i}.npy", g[:50])
    store.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(gens[0])])
    writer = IndexFiles(store, tmp_path / "index", refresh_interval=None)
    writer.refresh()
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", _READER, str(tmp_path), str(n_gen)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    builds = 0
    try:
        time.sleep(1.0)
        for i in range(1, n_gen):
            # Replace generation i-1 by generation i: large enough to force a rebuild.
            store.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(gens[i])], replace=True)
            before = json.loads((tmp_path / "index" / MANIFEST_NAME).read_text())
            writer.refresh()
            after = json.loads((tmp_path / "index" / MANIFEST_NAME).read_text())
            builds += before["types"]["pdq"]["file"] != after["types"]["pdq"]["file"]
            time.sleep(0.4)
    finally:
        (tmp_path / "stop").touch()
        outputs = [r.communicate(timeout=120) for r in readers]
    assert builds == n_gen - 1
    for r, (out, err) in zip(readers, outputs, strict=True):
        assert r.returncode == 0, err
        seen, loops = out.split("]")[0] + "]", int(out.split("]")[1])
        assert loops > 5
        assert len(json.loads(seen)) >= 3, out  # it did follow the updates
    store.close()


def test_threads_search_while_refreshing(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = Store.open(tmp_path / "store.sqlite3")
    store.add_list("l", kind=ListKind.BLOCK)
    gens = [pdq_codes(rng, 2000) for _ in range(4)]
    store.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(gens[0])])
    matcher = IndexFiles(store, tmp_path / "index", refresh_interval=0.0)
    matcher.refresh()
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                for g in gens:
                    n = len(set(matcher.search("pdq", g[:20], 0).query.tolist()))
                    assert n in (0, 20)
        except BaseException as exc:
            errors.append(exc)
            raise

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for g in gens[1:]:
        store.apply_batch("l", [EntryUpsert("pdq", h) for h in hexes(g)], replace=True)
        matcher.refresh()
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(matcher.search("pdq", gens[-1][:20], 0)) == 20
    store.close()
