"""A sync killed with SIGKILL at any moment leaves the store intact and the list whole.

``uploadscan sync`` runs as a real subprocess on a 200 000-entry list file and is killed at
spread-out random moments: while it imports and parses, inside the write transaction, around
the commit, and while it refreshes the index afterwards. After each kill:

- the store opens and ``Store.check()`` (SQLite's full integrity check) finds nothing;
- the list holds exactly the old or exactly the new version (its entry count is one of the
  two, never a mix);
- a fresh ``Scanner`` agrees with that count: a hash in both versions matches, the hash only
  in the new version matches exactly when the count is the new one, and the hash only in the
  old version exactly when it is the old one.

The list file alternates between two versions, so every round syncs a real change whatever
the previous round left behind. A separate test kills the sync right after its commit, while
the index is being built from scratch, and checks that the next ``Scanner.open`` answers.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uploadscan import Scanner
from uploadscan.store._store import Store

ENTRIES = 200_000
KILL_POINTS = 15
LIST = "big"


def _pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


class Versions:
    """Two versions of one list: a shared body plus a few thousand entries unique to each."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.shared = [_pdq(rng) for _ in range(ENTRIES - 2_000)]
        self.only = {v: [_pdq(rng) for _ in range(2_000 + 1_000 * v)] for v in (0, 1)}
        self.common_probe = self.shared[12_345]

    def count(self, version: int) -> int:
        return len(self.shared) + len(self.only[version])

    def write(self, path: Path, version: int) -> None:
        body = self.shared + self.only[version]
        path.write_text("".join(f"pdq {h}\n" for h in body))

    def version_of(self, count: int) -> int | None:
        return {self.count(0): 0, self.count(1): 1}.get(count)


def _sync_process(home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uploadscan.cli", "sync", "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _list_count(home: Path) -> int:
    with Store.open(home / "store.sqlite3") as store:
        return store.get_list(LIST).entry_count


def _matches(scanner: Scanner, value: str) -> bool:
    verdict = scanner.lookup({"pdq": value})
    return any(m.list_name == LIST and m.value == value for m in verdict.matches)


def _check_consistent(home: Path, versions: Versions) -> int:
    """Everything a killed sync must leave behind; returns the version the list is at."""
    with Store.open(home / "store.sqlite3") as store:
        assert store.check() == []
        count = store.get_list(LIST).entry_count
    version = versions.version_of(count)
    assert version is not None, f"list has {count} entries: neither version"
    with Scanner.open(home, audit=False) as scanner:
        assert _matches(scanner, versions.common_probe)
        for v in (0, 1):
            probe = versions.only[v][7]
            assert _matches(scanner, probe) == (v == version), (v, version)
    return version


@pytest.fixture(scope="module")
def versions() -> Versions:
    return Versions(seed=99)


def _setup_home(home: Path, versions: Versions, version: int) -> Path:
    list_file = home.parent / f"{home.name}-list.txt"
    versions.write(list_file, version)
    with Scanner.open(home, audit=False) as scanner:
        scanner.add_list(LIST, kind="block", source=str(list_file))
    return list_file


def test_sync_killed_at_random_points(tmp_path: Path, versions: Versions) -> None:
    home = tmp_path / "home"
    list_file = _setup_home(home, versions, 0)
    started = time.monotonic()
    first = _sync_process(home)
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    if first.stderr:
        first.stderr.close()
    assert _check_consistent(home, versions) == 0
    # An uninterrupted sync of one change takes about this long (upper bound for the kills).
    current = 0
    versions.write(list_file, 1)
    started = time.monotonic()
    full = _sync_process(home)
    assert full.wait(timeout=300) == 0
    if full.stderr:
        full.stderr.close()
    span = time.monotonic() - started
    current = _check_consistent(home, versions)
    assert current == 1

    rng = random.Random(7)
    outcomes = {"old": 0, "new": 0}
    for point in range(KILL_POINTS):
        target = 1 - current
        versions.write(list_file, target)
        # Stratified: one kill in each fifteenth of the sync's running time.
        delay = span * (point + rng.random()) / KILL_POINTS
        proc = _sync_process(home)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        reached = _check_consistent(home, versions)
        outcomes["new" if reached == target else "old"] += 1
        current = reached
    # The kills must have landed on both sides of the commit to mean anything.
    assert outcomes["old"] >= 2 and outcomes["new"] >= 2, outcomes
    # And a later, uninterrupted sync still completes.
    versions.write(list_file, 1 - current)
    final = _sync_process(home)
    assert final.wait(timeout=300) == 0
    if final.stderr:
        final.stderr.close()
    assert _check_consistent(home, versions) == 1 - current
    print(f"\n{KILL_POINTS} kills over {span:.1f} s: {outcomes}")


def test_sync_killed_during_the_index_build(tmp_path: Path, versions: Versions) -> None:
    """Killed after the commit, before the index manifest names the new build."""
    killed_in_build = 0
    for attempt in range(4):
        home = tmp_path / f"home{attempt}"
        _setup_home(home, versions, 0)
        proc = _sync_process(home)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _committed(home, versions):
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        assert _committed(home, versions), "the sync did not commit"
        if not (home / "index" / "manifest.json").exists():
            killed_in_build += 1
        # The next scanner builds (or finishes) the index and answers at the new version.
        assert _check_consistent(home, versions) == 0
        assert (home / "index" / "manifest.json").exists()
        if killed_in_build:
            break
    assert killed_in_build, "every sync finished its index build before the kill"


def _committed(home: Path, versions: Versions) -> bool:
    try:
        return _list_count(home) == versions.count(0)
    except Exception:  # the store may not exist yet
        return False


def test_stale_temporary_files_do_not_confuse_the_next_sync(tmp_path: Path) -> None:
    """A writer killed mid-build can leave a half-written index file or manifest temp file."""
    versions = Versions(seed=5)
    home = tmp_path / "home"
    _setup_home(home, versions, 0)
    index = home / "index"
    index.mkdir(parents=True, exist_ok=True)
    (index / f".manifest.json.{os.getpid()}.tmp").write_text('{"format": 1, "types": {')
    (index / "pdq.v2.idx").write_bytes(b"\x00" * 1000)  # the name the first build will use
    proc = _sync_process(home)
    assert proc.wait(timeout=300) == 0
    if proc.stderr:
        proc.stderr.close()
    assert _check_consistent(home, versions) == 0
