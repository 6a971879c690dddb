"""A sync killed with SIGKILL at any moment leaves the store intact and the list whole.

``uploadscan sync`` runs as a real subprocess on a 200 000-entry list file and is killed with
SIGKILL at spread-out moments: after it imports, while it reads the store and parses, inside
the write transaction, frozen on its ``COMMIT``, and while it marks the list synced and
refreshes the index afterwards. After each kill:

- the store opens and ``Store.check()`` (SQLite's full integrity check) finds nothing;
- the list holds exactly the version the kill point implies: the old one if the data
  transaction's ``COMMIT`` had not run, the new one if it had (its entry count is one of the
  two, never a mix);
- a fresh ``Scanner`` agrees with that count: a hash in both versions matches, the hash only
  in the new version matches exactly when the count is the new one, and the hash only in the
  old version exactly when it is the old one.

The kill points are defined by the child's own progress, not by the clock (timed kills all
landed before the commit on a loaded machine): the child is the real CLI with an SQLite trace
callback on each connection (``_TRACED_SYNC``) that reports every statement it starts on a pipe
and, at the statement the test names, freezes before running it. The test then sends SIGKILL.
An uninterrupted traced sync of each direction first gives the statement sequence, from which
the kill points are spread over the three phases.

The list file alternates between two versions, so every round syncs a real change whatever
the previous round left behind. A separate test kills a first sync after its commit, while the
index is being built from scratch, and checks that the next ``Scanner.open`` answers.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from uploadscan import Scanner
from uploadscan.store._store import Store

ENTRIES = 200_000
LIST = "big"
#: Where to kill, as (phase, fraction of that phase's statements): 15 points. "before" runs up
#: to and including the data transaction's BEGIN IMMEDIATE (frozen before it runs), "inside"
#: up to and including its COMMIT (frozen before it runs: nothing committed), "after" the rest.
KILL_PLAN = [
    *(("before", f) for f in (0.0, 0.35, 0.7, 1.0)),
    *(("inside", f) for f in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
    *(("after", f) for f in (0.0, 0.25, 0.5, 0.75, 1.0)),
]
#: A child that never reaches its kill point (or hangs) fails the test after this long.
CHILD_TIMEOUT = 300.0


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


#: ``uploadscan sync`` (the CLI's own ``main``) with every SQLite connection traced: each
#: statement it starts is reported on the pipe as [index, in_transaction, sql, frozen,
#: index manifest exists]; at statement ``stop`` (0: never) it reports and then waits, before
#: running it, for SIGKILL.
_TRACED_SYNC = """
import json, os, sqlite3, sys, threading
home, stop, fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
manifest = os.path.join(home, "index", "manifest.json")
started = 0
lock = threading.Lock()
_connect = sqlite3.connect

def connect(*args, **kwargs):
    conn = _connect(*args, **kwargs)

    def trace(sql):
        global started
        with lock:
            started += 1
            index = started
        frozen = index == stop
        report = [index, conn.in_transaction, sql[:80], frozen, os.path.exists(manifest)]
        os.write(fd, (json.dumps(report) + "\\n").encode())
        if frozen:
            threading.Event().wait()  # until SIGKILL

    conn.set_trace_callback(trace)
    return conn

sqlite3.connect = connect
from uploadscan.cli import main
status = main(["sync", "--home", home])
os.close(fd)
sys.exit(status)
"""


@dataclass(frozen=True)
class Statement:
    index: int
    in_transaction: bool
    sql: str
    frozen: bool
    manifest: bool  # the index manifest existed when the statement started


@dataclass(frozen=True)
class Run:
    """What a traced sync reported, and where its data transaction began and committed."""

    statements: list[Statement]
    exit_status: int | None  # None: killed by the test

    @property
    def data_transaction(self) -> tuple[int, int] | None:
        """(BEGIN IMMEDIATE, COMMIT) indexes of the transaction that writes the entries, once
        its COMMIT was reported (the COMMIT may be the frozen statement, not yet run)."""
        begin: int | None = None
        writes = False
        for st in self.statements:
            if st.sql.startswith("BEGIN IMMEDIATE"):
                begin, writes = st.index, False
            elif begin is not None and st.sql.startswith(("INSERT INTO entries", "UPDATE entries")):
                writes = True
            elif begin is not None and st.sql.startswith("COMMIT"):
                if writes:
                    return begin, st.index
                begin = None
        return None

    def phase(self) -> str:
        """Where the run stopped: "before" the data transaction began, "inside" it (its
        COMMIT not run), or "after" its COMMIT ran. Only statements that ran count: the
        frozen one was reported but never executed."""
        ran = [st for st in self.statements if not st.frozen]
        writing = entries = False
        for st in ran:
            if st.sql.startswith("BEGIN IMMEDIATE"):
                writing, entries = True, False
            elif writing and st.sql.startswith(("INSERT INTO entries", "UPDATE entries")):
                entries = True
            elif writing and st.sql.startswith(("COMMIT", "ROLLBACK")):
                if entries and st.sql.startswith("COMMIT"):
                    return "after"
                writing = False
        return "inside" if writing else "before"


def _traced_sync(home: Path, stop: int = 0) -> Run:
    """Run the traced sync; with ``stop``, SIGKILL it once it reports that it froze there."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", _TRACED_SYNC, str(home), str(stop), str(write_end)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(write_end,),
    )
    os.close(write_end)
    statements: list[Statement] = []
    deadline = time.monotonic() + CHILD_TIMEOUT
    buffer = b""
    killed = False
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while not killed:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                raise AssertionError(f"traced sync stuck after {statements[-1:]}")
            chunk = pipe.read(65536)
            if not chunk:
                break  # the child finished
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                statements.append(Statement(*json.loads(line)))
                if statements[-1].frozen:
                    proc.send_signal(signal.SIGKILL)
                    killed = True
    status = proc.wait(timeout=CHILD_TIMEOUT)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if stop:
        assert killed and status == -signal.SIGKILL, (status, stderr)
    else:
        assert status == 0, stderr
    return Run(statements, None if killed else status)


def _kill_point(profile: Run, phase: str, fraction: float) -> int:
    """The statement index at ``fraction`` of ``phase`` in an uninterrupted run's sequence."""
    span = profile.data_transaction
    assert span is not None
    begin, commit = span
    first, last = {
        "before": (1, begin),
        "inside": (begin + 1, commit),
        "after": (commit + 1, len(profile.statements)),
    }[phase]
    return first + round(fraction * (last - first))


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


@pytest.mark.slow  # no media: runs once in CI, in the pass with the extended corpus
def test_sync_killed_at_spread_out_points(tmp_path: Path, versions: Versions) -> None:
    home = tmp_path / "home"
    list_file = _setup_home(home, versions, 0)
    first = _sync_process(home)
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    if first.stderr:
        first.stderr.close()
    assert _check_consistent(home, versions) == 0
    # One uninterrupted traced sync in each direction: the statement sequences to spread the
    # kill points over (keyed by the version synced to).
    profiles = {}
    for target in (1, 0):
        versions.write(list_file, target)
        profiles[target] = _traced_sync(home)
        assert profiles[target].data_transaction is not None
        assert _check_consistent(home, versions) == target
    current = 0

    phases: dict[str, int] = {"before": 0, "inside": 0, "after": 0}
    outcomes = {"old": 0, "new": 0}
    for phase, fraction in KILL_PLAN:
        target = 1 - current
        versions.write(list_file, target)
        stop = _kill_point(profiles[target], phase, fraction)
        run = _traced_sync(home, stop)
        # Where it really froze, from its own report (not the profile's guess) ...
        phases[run.phase()] += 1
        expected = target if run.phase() == "after" else current
        # ... decides which version the killed sync must have left.
        reached = _check_consistent(home, versions)
        assert reached == expected, (phase, fraction, stop, run.statements[-1])
        outcomes["new" if reached == target else "old"] += 1
        current = reached
    # The kills landed in every phase, on both sides of the commit.
    assert phases["before"] >= 3 and phases["inside"] >= 5 and phases["after"] >= 4, phases
    assert outcomes["old"] >= 8 and outcomes["new"] >= 4, outcomes
    # And a later, uninterrupted sync still completes.
    versions.write(list_file, 1 - current)
    final = _sync_process(home)
    assert final.wait(timeout=300) == 0
    if final.stderr:
        final.stderr.close()
    assert _check_consistent(home, versions) == 1 - current


@pytest.mark.slow  # no media: runs once in CI, in the pass with the extended corpus
def test_sync_killed_during_the_index_build(tmp_path: Path, versions: Versions) -> None:
    """Killed after the commit, before the index manifest names the new build.

    The kill point is the last statement an uninterrupted first sync starts before the index
    manifest appears: the index build's read of the new entries, after which it writes the
    index files and then the manifest.
    """
    scratch = tmp_path / "scratch"
    _setup_home(scratch, versions, 0)
    profile = _traced_sync(scratch)
    span = profile.data_transaction
    assert span is not None and profile.statements[-1].manifest
    stop = max(st.index for st in profile.statements if not st.manifest)
    assert stop > span[1]

    home = tmp_path / "home"
    _setup_home(home, versions, 0)
    run = _traced_sync(home, stop)
    assert run.phase() == "after"
    assert _committed(home, versions), "the sync did not commit"
    assert not (home / "index" / "manifest.json").exists()
    # The next scanner builds (or finishes) the index and answers at the new version.
    assert _check_consistent(home, versions) == 0
    assert (home / "index" / "manifest.json").exists()


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
