"""The SQLite store: validation, atomic batches, versions and deltas, crashes, corruption."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from uploadscan import (
    Action,
    ConfigError,
    DeltaUnavailableError,
    InvalidHashError,
    ListNotFoundError,
    StoreCorruptError,
)
from uploadscan.store._audit import DecisionOrigin, DecisionRecord, ReviewStatus
from uploadscan.store._lists import EntryUpsert, ListKind, ListSettings
from uploadscan.store._store import Store

PDQ_A = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
PDQ_B = "e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064"
MD5_A = "d41d8cd98f00b204e9800998ecf8427e"


def random_pdq(rng: np.random.Generator, n: int) -> list[str]:
    return [bytes(row).hex() for row in rng.integers(0, 256, (n, 32), dtype=np.uint8)]


def live(store: Store, hash_type: str, version: int | None = None) -> set[str]:
    _, codes = store.snapshot(hash_type, version)
    return {bytes(row).hex() for row in codes}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "data" / "store.sqlite3")
    yield s
    s.close()


def test_open_creates_file_and_parents_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.sqlite3"
    with Store.open(path) as s:
        assert s.version() == 0
        assert s.lists() == []
    assert path.is_file()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    conn.close()


def test_list_lifecycle(store: Store) -> None:
    settings = ListSettings(pdq_threshold=20, labels=("terror",))
    created = store.add_list("gifct", kind=ListKind.BLOCK, source="file:/x.csv", settings=settings)
    assert created.name == "gifct" and created.kind is ListKind.BLOCK
    assert created.settings == settings and created.entry_count == 0
    with pytest.raises(ConfigError, match="already exists"):
        store.add_list("gifct", kind=ListKind.REVIEW)
    for bad in ("", "-x", "a b", "x" * 65, "é"):
        with pytest.raises(ConfigError):
            store.add_list(bad, kind=ListKind.BLOCK)
    store.add_list("allow.local", kind=ListKind.ALLOW)
    assert [hl.name for hl in store.lists()] == ["allow.local", "gifct"]
    v = store.version()
    store.update_settings("gifct", ListSettings(pdq_threshold=25))
    store.set_source("gifct", "https://example.org/feed")
    hl = store.get_list("gifct")
    assert hl.settings.pdq_threshold == 25 and hl.source == "https://example.org/feed"
    assert store.version() == v + 2 == hl.version
    store.remove_list("gifct")
    with pytest.raises(ListNotFoundError):
        store.get_list("gifct")
    with pytest.raises(ListNotFoundError):
        store.apply_batch("gifct", [EntryUpsert("pdq", PDQ_A)])
    # The name is free again.
    assert store.add_list("gifct", kind=ListKind.REVIEW).kind is ListKind.REVIEW


def test_settings_validation() -> None:
    s = ListSettings(pdq_action_distance=10, labels=("a", "b"), max_age_seconds=3600)
    assert ListSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ConfigError, match="pdq_treshold"):
        ListSettings.from_dict({"pdq_treshold": 10})
    for bad in (
        {"pdq_threshold": -1},
        {"pdq_threshold": "31"},
        {"pdq_threshold": 20, "pdq_action_distance": 21},
        {"min_quality": 101},
        {"labels": "terror"},
        {"max_age_seconds": 0},
        {"video_coverage": 1.5},
        {"video_upload_fraction": float("nan")},
    ):
        with pytest.raises(ConfigError):
            ListSettings.from_dict(bad)


def test_batch_upsert_update_delete_counts_and_versions(store: Store) -> None:
    store.add_list("l", kind=ListKind.BLOCK)
    v0 = store.version()
    r = store.apply_batch(
        "l",
        [
            EntryUpsert("pdq", PDQ_A.upper(), ("b", "a")),
            EntryUpsert("pdq", PDQ_B, external_id="x1"),
            EntryUpsert("md5", MD5_A, extra={"frames": [1, 2]}),
        ],
        checkpoint="cp1",
    )
    assert (r.added, r.updated, r.removed, r.unchanged) == (3, 0, 0, 0)
    assert r.version == v0 + 1 == store.version()
    hl = store.get_list("l")
    assert hl.checkpoint == "cp1" and hl.last_sync is not None and hl.version == r.version
    assert hl.counts_by_type == {"md5": 1, "pdq": 2} and hl.entry_count == 3
    entries = {e.value: e for e in store.list_entries("l")}
    assert entries[PDQ_A].labels == ("a", "b")  # canonical hex, sorted labels
    assert entries[MD5_A].extra == {"frames": [1, 2]}
    # Same content again: nothing changes, no version bump, checkpoint still moves.
    r2 = store.apply_batch(
        "l",
        [EntryUpsert("pdq", PDQ_A, ("a", "b")), EntryUpsert("pdq", PDQ_B, external_id="x1")],
        checkpoint="cp2",
    )
    assert (r2.added, r2.updated, r2.unchanged, r2.version) == (0, 0, 2, r.version)
    assert store.get_list("l").checkpoint == "cp2"
    # Label change updates in place (same id); delete removes.
    r3 = store.apply_batch("l", [EntryUpsert("pdq", PDQ_A, ("c",))], [("md5", MD5_A.upper())])
    assert (r3.added, r3.updated, r3.removed, r3.version) == (0, 1, 1, r.version + 1)
    after = {e.value: e for e in store.list_entries("l")}
    assert after[PDQ_A].labels == ("c",) and after[PDQ_A].id == entries[PDQ_A].id
    assert MD5_A not in after
    assert store.get_list("l").counts_by_type == {"pdq": 2}
    # Within one batch: the last upsert wins and a delete beats an upsert.
    r4 = store.apply_batch(
        "l",
        [EntryUpsert("md5", MD5_A, ("x",)), EntryUpsert("md5", MD5_A, ("y",))],
        [("pdq", PDQ_B)],
    )
    assert (r4.added, r4.removed) == (1, 1)
    e = store.list_entries("l", hash_type="md5")
    assert [x.labels for x in e] == [("y",)]
    r5 = store.apply_batch("l", [EntryUpsert("pdq", PDQ_B)], [("pdq", PDQ_B)])
    assert (r5.added, r5.removed, r5.unchanged) == (0, 0, 0)


def test_invalid_entry_names_it_and_applies_nothing(store: Store) -> None:
    store.add_list("l", kind=ListKind.BLOCK)
    store.apply_batch("l", [EntryUpsert("pdq", PDQ_A)], checkpoint="before")
    v = store.version()
    rng = np.random.default_rng(7)
    good = [EntryUpsert("pdq", h) for h in random_pdq(rng, 500)]
    cases = [
        (EntryUpsert("pdq", "f8f8"), "entry 250"),
        (EntryUpsert("pdq", "zz" * 32), "entry 250"),
        (EntryUpsert("pdq", "0" * 64), "degenerate"),  # all-zero PDQ
        (EntryUpsert("pdq", "f" * 64), "degenerate"),
        (EntryUpsert("md5", "d41d8cd98f00b204e9800998ecf8427"), "entry 250"),
        (EntryUpsert("nosuchtype", PDQ_A), "nosuchtype"),
    ]
    for bad, message in cases:
        batch = [*good[:250], bad, *good[250:]]
        with pytest.raises(InvalidHashError, match=message):
            store.apply_batch("l", iter(batch), [("pdq", PDQ_A)], checkpoint="after", replace=True)
    with pytest.raises(InvalidHashError, match="delete 0"):
        store.apply_batch("l", good, [("pdq", "xyz")])
    assert store.version() == v
    assert live(store, "pdq") == {PDQ_A}
    assert store.get_list("l").checkpoint == "before"
    # The store still works normally afterwards.
    assert store.apply_batch("l", good).added == 500


def test_replace_semantics(store: Store) -> None:
    store.add_list("a", kind=ListKind.BLOCK)
    store.add_list("b", kind=ListKind.REVIEW)
    rng = np.random.default_rng(11)
    first = random_pdq(rng, 300)
    store.apply_batch("a", [EntryUpsert("pdq", h) for h in first] + [EntryUpsert("md5", MD5_A)])
    store.apply_batch("b", [EntryUpsert("pdq", h) for h in first[:10]])
    keep, new = first[100:], random_pdq(rng, 50)
    r = store.apply_batch("a", [EntryUpsert("pdq", h) for h in keep + new], replace=True)
    assert (r.added, r.removed, r.unchanged) == (50, 101, 200)  # 100 pdq + the md5 entry
    assert {e.value for e in store.list_entries("a")} == set(keep + new)
    assert store.get_list("a").counts_by_type == {"pdq": 250}
    # Other lists are untouched; the snapshot spans all lists.
    assert {e.value for e in store.list_entries("b")} == set(first[:10])
    assert live(store, "pdq") == set(keep + new + first[:10])
    r = store.apply_batch("a", [], replace=True)
    assert r.removed == 250 and store.get_list("a").entry_count == 0


def test_snapshot_and_changes_are_exact_at_every_version(store: Store) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    store.add_list("a", kind=ListKind.BLOCK)
    store.add_list("b", kind=ListKind.BLOCK)
    model: dict[str, set[str]] = {"a": set(), "b": set()}
    history = {store.version(): set()}
    pool = random_pdq(rng, 400)
    for _ in range(12):
        name = "a" if rng.random() < 0.6 else "b"
        ups = set(rng.choice(pool, size=int(rng.integers(0, 60))).tolist())
        dels = set(rng.choice(pool, size=int(rng.integers(0, 60))).tolist()) - ups
        replace = bool(rng.random() < 0.15)
        store.apply_batch(
            name, [EntryUpsert("pdq", h) for h in ups], [("pdq", h) for h in dels], replace=replace
        )
        model[name] = (set() if replace else model[name] - dels) | ups
        history[store.version()] = model["a"] | model["b"]
    versions = sorted(history)
    for v in versions:
        assert live(store, "pdq", v) == history[v], v
    for i, since in enumerate(versions):
        for upto in versions[i:]:
            ids, codes, removed = store.changes("pdq", since, upto)
            base_ids, _ = store.snapshot("pdq", since)
            end_ids, end_codes = store.snapshot("pdq", upto)
            expect_added = set(end_ids.tolist()) - set(base_ids.tolist())
            assert set(ids.tolist()) == expect_added
            assert set(removed.tolist()) == set(base_ids.tolist()) - set(end_ids.tolist())
            by_id = dict(zip(end_ids.tolist(), map(bytes, end_codes), strict=True))
            assert all(by_id[i] == bytes(c) for i, c in zip(ids.tolist(), codes, strict=True))
    # Entries looked up by id: only live ones come back.
    ids, _ = store.snapshot("pdq")
    got = store.entries([*ids.tolist(), 10**9])
    assert set(got) == set(ids.tolist())
    assert {e.value for e in got.values()} == history[versions[-1]]


def test_remove_list_tombstones_and_compact(store: Store) -> None:
    store.add_list("a", kind=ListKind.BLOCK)
    store.apply_batch("a", [EntryUpsert("pdq", PDQ_A), EntryUpsert("pdq", PDQ_B)])
    v1 = store.version()
    ids, _ = store.snapshot("pdq")
    store.remove_list("a")
    v2 = store.version()
    assert live(store, "pdq") == set()
    assert live(store, "pdq", v1) == {PDQ_A, PDQ_B}
    _, _, removed = store.changes("pdq", v1, v2)
    assert sorted(removed.tolist()) == sorted(ids.tolist())
    assert store.hash_types() == []
    assert store.compact(v2 + 1) == 2
    with pytest.raises(DeltaUnavailableError):
        store.changes("pdq", v1, v2)
    store.changes("pdq", v2, v2)  # still fine from the horizon on
    # Ids are never reused, even after the highest rows were purged.
    store.add_list("c", kind=ListKind.BLOCK)
    store.apply_batch("c", [EntryUpsert("pdq", PDQ_A)])
    new_ids, _ = store.snapshot("pdq")
    assert new_ids[0] > ids.max()


def test_threads_share_a_store(store: Store) -> None:
    store.add_list("l", kind=ListKind.BLOCK)
    rng = np.random.default_rng(3)
    values = random_pdq(rng, 800)
    errors: list[BaseException] = []

    def writer(chunk: list[str]) -> None:
        try:
            for i in range(0, len(chunk), 50):
                store.apply_batch("l", [EntryUpsert("pdq", h) for h in chunk[i : i + 50]])
                store.snapshot("pdq")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(values[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert live(store, "pdq") == set(values)
    assert store.version() == 1 + 16


def test_corrupt_store_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreCorruptError, match=re.escape(str(junk))):
        Store.open(junk)
    # A real store with its pages overwritten in the middle.
    path = tmp_path / "store.sqlite3"
    with Store.open(path) as s:
        s.add_list("l", kind=ListKind.BLOCK)
        s.apply_batch(
            "l", [EntryUpsert("pdq", h) for h in random_pdq(np.random.default_rng(1), 3000)]
        )
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, 3 * page):
        data[offset : offset + 512] = os.urandom(512)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match=re.escape(str(path))):
        Store.open(path)
    # The header itself damaged.
    data[:16] = b"garbage garbage!"
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="not a usable uploadscan database"):
        Store.open(path)


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from uploadscan.store._lists import EntryUpsert
    from uploadscan.store._store import Store

    store = Store.open(sys.argv[1])
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (400_000, 32), dtype=np.uint8)
    print("ready", flush=True)
    store.apply_batch("l", (EntryUpsert("pdq", bytes(c).hex()) for c in codes), replace=True)
    print("committed", flush=True)
    """
)


@pytest.mark.slow  # no media: runs once in CI, in the pass with the extended corpus
def test_writer_killed_mid_transaction_leaves_old_version(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with Store.open(path) as s:
        s.add_list("l", kind=ListKind.BLOCK)
        s.apply_batch("l", [EntryUpsert("pdq", PDQ_A), EntryUpsert("pdq", PDQ_B)])
        before = s.version()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    # Wait until the writer holds the write lock (its transaction is open), then kill it.
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    deadline = time.monotonic() + 120
    locked = False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        except sqlite3.OperationalError:
            locked = True
            break
        time.sleep(0.005)
    assert locked, "the writer never started its transaction"
    time.sleep(0.3)  # let it write pages into the WAL
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    probe.close()
    assert proc.returncode == -signal.SIGKILL
    with Store.open(path) as s:
        assert s.version() == before
        assert live(s, "pdq") == {PDQ_A, PDQ_B}
        assert s.get_list("l").entry_count == 2
        assert s.check() == []
        assert s.apply_batch("l", [EntryUpsert("md5", MD5_A)]).version == before + 1


def test_decisions_log(store: Store) -> None:
    now = time.time()
    store.record_decision(
        DecisionRecord(
            verdict_id="v1",
            time=now - 100,
            sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            action=Action.BLOCK,
            matches=({"list": "gifct", "distance": 3},),
            list_versions={"gifct": 4},
        )
    )
    store.record_decision(DecisionRecord("v2", Action.REVIEW, now, origin=DecisionOrigin.LOOKUP))
    with pytest.raises(ConfigError, match="already exists"):
        store.record_decision(DecisionRecord("v2", Action.REVIEW, now))
    with pytest.raises(ConfigError, match="DecisionRecord"):
        store.record_decision({"verdict_id": "v3", "action": "allow", "content": b"x"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        DecisionRecord("v3", "maybe", now)  # type: ignore[arg-type]
    assert [d.verdict_id for d in store.decisions()] == ["v1", "v2"]
    assert store.decisions(action=Action.BLOCK)[0].matches == ({"list": "gifct", "distance": 3},)
    assert [d.verdict_id for d in store.decisions(since=now - 1)] == ["v2"]
    assert [d.verdict_id for d in store.decisions(origin=DecisionOrigin.LOOKUP)] == ["v2"]
    store.set_review("v2", ReviewStatus.PENDING, None)
    store.set_review("v1", ReviewStatus.OVERTURNED, "false positive: news report")
    pending = store.decisions(review_status=ReviewStatus.PENDING)
    assert [d.verdict_id for d in pending] == ["v2"]
    overturned = store.decisions(review_status=ReviewStatus.OVERTURNED)[0]
    assert overturned.review_note is not None and overturned.review_note.startswith("false")
    with pytest.raises(ConfigError):
        store.set_review("v1", "approved", None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        store.set_review("nope", ReviewStatus.CONFIRMED, None)
    assert store.purge_decisions(now - 50) == 1
    assert [d.verdict_id for d in store.decisions()] == ["v2"]


def test_video_frames(store: Store) -> None:
    store.add_list("v", kind=ListKind.BLOCK)
    rng = np.random.default_rng(2)
    frames = random_pdq(rng, 6)
    ups = [
        EntryUpsert("pdq", h, extra={"video": "clip1" if i < 4 else "clip2", "timestamp": 4.0 - i})
        for i, h in enumerate(frames)
    ]
    store.apply_batch("v", [*ups, EntryUpsert("pdq", PDQ_A)])
    got = store.video_frames("v", "clip1")
    assert [e.value for e in got] == frames[:4][::-1]  # by timestamp
    assert [e.extra["timestamp"] for e in got] == [1.0, 2.0, 3.0, 4.0]
    store.apply_batch("v", [], [("pdq", frames[0])])
    assert len(store.video_frames("v", "clip1")) == 3
    assert store.video_frames("v", "nope") == []
    with pytest.raises(ListNotFoundError):
        store.video_frames("missing", "clip1")
