"""Progress of long syncs, index builds and the demo, and when each ``sync --watch`` round ran.

The sync code reports ``on_progress(done, total)`` (records read; ``total`` once the source
knows it); the command line draws it with tqdm on a terminal only. The terminal case runs
the real CLI with its stderr on a pseudo-terminal; the piped case must stay silent.
"""

from __future__ import annotations

import datetime
import fcntl
import gzip
import json
import os
import pty
import random
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from _local_http import LocalServer

from uploadscan import Scanner
from uploadscan.store._lists import ListKind
from uploadscan.store._store import Store
from uploadscan.sync import generate_keypair, publish_feed, sync_list, sync_lists

LINES = 150_000


def _write_list(path: Path, n: int, seed: int, *, compress: bool = False) -> None:
    rng = random.Random(seed)
    body = "".join(f"pdq {rng.getrandbits(256):064x}\n" for _ in range(n)).encode()
    path.write_bytes(gzip.compress(body, compresslevel=1) if compress else body)


def _calls(store: Store, name: str) -> list[tuple[int, int | None]]:
    calls: list[tuple[int, int | None]] = []
    sync_list(store, name, on_progress=lambda done, total: calls.append((done, total)))
    return calls


def test_file_sync_reports_lines_read_against_the_line_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reports are at most ten a second; an idle machine reads the whole list in less. Without
    # that pacing every batch of records reports, so "some along the way" does not depend on
    # how fast this machine happens to be.
    monkeypatch.setattr("uploadscan.sync._runner._REPORT_INTERVAL", 0.0)
    plain, packed = tmp_path / "big.txt", tmp_path / "big.txt.gz"
    _write_list(plain, LINES, 1)
    _write_list(packed, LINES, 2, compress=True)
    csv = tmp_path / "big.csv"
    rng = random.Random(3)
    csv.write_text(
        "hash_type,value\n" + "".join(f"md5,{rng.getrandbits(128):032x}\n" for _ in range(20_000))
    )
    with Store.open(tmp_path / "store.sqlite3") as store:
        for name, path in (("plain", plain), ("packed", packed), ("csv", csv)):
            store.add_list(name, kind=ListKind.BLOCK, source=str(path))
        calls = _calls(store, "plain")
        assert len(calls) >= 3  # a first report, some along the way, the last
        assert calls[0] == (0, LINES)
        assert calls[-1] == (LINES, LINES)
        assert all(total == LINES for _, total in calls)
        dones = [d for d, _ in calls]
        assert dones == sorted(dones) and any(0 < d < LINES for d in dones)

        calls = _calls(store, "packed")  # gzip: how many lines is unknown until the end
        assert calls[-1] == (LINES, LINES)
        assert all(total is None for _, total in calls[:-1])
        assert any(0 < d < LINES for d, _ in calls)

        calls = _calls(store, "csv")  # line by line (not the bulk path)
        assert calls[0] == (0, 20_001) and calls[-1] == (20_001, 20_001)

        assert _calls(store, "plain") == [(0, 0)]  # unchanged file: nothing to read


def test_feed_and_combined_progress(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    public = generate_keypair(key).replace("+", "%2B")
    _write_list(tmp_path / "feed.txt", 3000, 4)
    _write_list(tmp_path / "file.txt", 5000, 5)
    with LocalServer() as server, Store.open(tmp_path / "store.sqlite3") as store:
        from _cli import StaticFiles

        StaticFiles(server, tmp_path / "www")
        publish_feed(tmp_path / "feed.txt", tmp_path / "www" / "f", key, list_name="f")
        store.add_list("f", kind=ListKind.BLOCK, source=f"{server.url}/f/?key={public}")
        store.add_list("g", kind=ListKind.BLOCK, source=str(tmp_path / "file.txt"))
        calls: list[tuple[int, int | None]] = []
        results = sync_lists(store, on_progress=lambda d, t: calls.append((d, t)))
    assert all(r.ok for r in results)
    assert calls[-1] == (8000, 8000)
    assert max(d for d, _ in calls) == 8000
    # Once both lists have started, the total is the sum of the manifest's and the file's.
    assert {t for _, t in calls if t is not None} <= {3000, 5000, 8000}
    assert (8000, 8000) in calls and any(t == 8000 and d < 8000 for d, t in calls)


@pytest.fixture
def big_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    _write_list(tmp_path / "big.txt", 200_000, 6)
    with Store.open(home / "store.sqlite3") as store:
        store.add_list("big", kind=ListKind.BLOCK, source=str(tmp_path / "big.txt"))
    return home


def _on_terminal(*args: str) -> tuple[int, str, bytes]:
    """Run the CLI with its stderr on a pseudo-terminal: (exit status, what it drew, stdout)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "uploadscan.cli", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    drawn = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, drawn.decode(errors="replace"), out


def test_sync_draws_progress_on_a_terminal_only(big_home: Path) -> None:
    returncode, text, out = _on_terminal("sync", "--home", str(big_home))
    assert returncode == 0, text
    assert "sync:" in text and "records" in text, text
    assert "200k" in text, text  # the total: the list file's line count
    assert "%|" in text, text  # a real bar, with a percentage
    assert "index:" in text and "entries" in text, text  # the first index build, after the sync
    assert b"big" in out and b" ok" in out  # the table still goes to stdout

    piped = subprocess.run(
        [sys.executable, "-m", "uploadscan.cli", "sync", "--home", str(big_home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert piped.returncode == 0 and piped.stderr == ""


def test_demo_draws_progress_on_a_terminal_only(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    returncode, text, out = _on_terminal("demo", "--home", home)
    assert returncode == 0, text
    assert "scanning:" in text and "%|" in text, text
    assert b"harbour" in out  # the table still goes to stdout
    piped = subprocess.run(
        [sys.executable, "-m", "uploadscan.cli", "demo", "--home", home],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert piped.returncode == 0 and piped.stderr == ""


def test_first_index_build_reports_entries_indexed(tmp_path: Path) -> None:
    _write_list(tmp_path / "l.txt", 5_000, 8)
    with Scanner.open(tmp_path / "home") as scanner:
        scanner.add_list("l", kind="block", source=str(tmp_path / "l.txt"))
        calls: list[tuple[int, int]] = []
        scanner.sync(on_index_progress=lambda done, total: calls.append((done, total)))
        assert calls[0] == (0, 5_000) and calls[-1] == (5_000, 5_000), calls
        assert [done for done, _ in calls] == sorted(done for done, _ in calls)
        calls.clear()
        scanner.sync()  # nothing changed: nothing to build, nothing reported
        scanner.sync(on_index_progress=lambda done, total: calls.append((done, total)))
        assert calls == []


@pytest.mark.parametrize("as_json", [False, True])
def test_watch_rounds_are_timestamped(tmp_path: Path, as_json: bool) -> None:
    home = tmp_path / "home"
    _write_list(tmp_path / "l.txt", 10, 7)
    with Store.open(home / "store.sqlite3") as store:
        store.add_list("l", kind=ListKind.BLOCK, source=str(tmp_path / "l.txt"))
    args = ["sync", "--watch", "0.2", "--home", str(home)] + (["--json"] if as_json else [])
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    stamps: list[datetime.datetime] = []
    with subprocess.Popen(
        [sys.executable, "-m", "uploadscan.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            give_up = time.monotonic() + 60
            while len(stamps) < 3:
                assert time.monotonic() < give_up, f"{len(stamps)} stamped rounds in a minute"
                ready, _, _ = select.select([proc.stdout], [], [], 10)
                assert ready, "no output for 10 s"
                line = proc.stdout.readline()
                assert line, "sync --watch exited"
                if as_json:
                    stamps.append(datetime.datetime.fromisoformat(json.loads(line)["round"]))
                elif line.startswith("sync round at "):
                    stamp = line.removeprefix("sync round at ").strip()
                    stamps.append(datetime.datetime.fromisoformat(stamp))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert all(s.utcoffset() == datetime.timedelta(0) for s in stamps)  # ISO 8601, UTC
    assert stamps == sorted(stamps)
    assert started <= stamps[0] and stamps[-1] <= datetime.datetime.now(datetime.UTC)
