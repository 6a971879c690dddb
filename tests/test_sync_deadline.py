"""One slow list never holds up the others: whole-sync deadlines against real slow servers.

Feeds are served from a real HTTP server on 127.0.0.1. One of them trickles the file a sync
needs one byte at a time (a per-request timeout alone lets that run for ten minutes); another
never answers at all; a third is missing. Every list is first synced while all is well, then
each feed publishes a new version, so a timed-out list must be seen to keep its previous
entries and checkpoint exactly, while the healthy lists, synced at the same time, finish in
well under the deadline.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _cli import StaticFiles, run
from _local_http import LocalServer, Reply, Request
from test_tcap import TOKEN, FakeTcap

from uploadscan.hashtypes import PdqHashType
from uploadscan.store._lists import ListKind
from uploadscan.store._store import Store
from uploadscan.sync import (
    Credentials,
    SyncTimeoutError,
    generate_keypair,
    publish_feed,
    sync_list,
    sync_lists,
)

DEADLINE = 3.0
PDQ_A, PDQ_B = PdqHashType.example_values


def _values(rng: random.Random, n: int) -> set[str]:
    return {f"{rng.getrandbits(256):064x}" for _ in range(n)}


@dataclass
class Setup:
    home: Path
    server: LocalServer
    files: StaticFiles
    versions: dict[str, list[set[str]]]
    hang: threading.Event

    def entries(self, name: str) -> set[str]:
        with Store.open(self.home / "store.sqlite3") as store:
            return {e.value for e in store.list_entries(name)}

    def checkpoint(self, name: str) -> dict[str, object]:
        with Store.open(self.home / "store.sqlite3") as store:
            return dict(json.loads(store.get_list(name).checkpoint or "{}"))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """Lists a-slow (trickles its delta), b-fast, c-file, d-missing (404) and e-silent (never
    answers), all synced once; then every feed publishes version 2."""
    rng = random.Random(5)
    home = tmp_path / "home"
    root = tmp_path / "www"
    hang = threading.Event()
    with LocalServer() as server:
        files = StaticFiles(server, root)

        def silent(req: Request) -> Reply:
            hang.wait(60)
            return Reply(503, b"")

        key = tmp_path / "publisher.key"
        public = generate_keypair(key).replace("+", "%2B")
        versions = {name: [_values(rng, 5), _values(rng, 5)] for name in ("a-slow", "b-fast")}
        list_file = tmp_path / "c-file.txt"
        list_file.write_text("".join(f"pdq {v}\n" for v in sorted(_values(rng, 5))))
        with Store.open(home / "store.sqlite3") as store:
            for name in versions:
                source = tmp_path / f"{name}.txt"
                source.write_text("".join(f"pdq {v}\n" for v in sorted(versions[name][0])))
                publish_feed(source, root / name, key, list_name=name)
                store.add_list(
                    name, kind=ListKind.BLOCK, source=f"{server.url}/{name}/?key={public}"
                )
            store.add_list("c-file", kind=ListKind.BLOCK, source=str(list_file))
            store.add_list(
                "d-missing", kind=ListKind.BLOCK, source=f"{server.url}/nope/?key={public}"
            )
            results = sync_lists(store, ["a-slow", "b-fast", "c-file"])
            assert all(r.ok for r in results), results
            server.routes["/e-silent/manifest.json"] = silent
            store.add_list(
                "e-silent", kind=ListKind.BLOCK, source=f"{server.url}/e-silent/?key={public}"
            )
            for name in versions:
                source = tmp_path / f"{name}.txt"
                source.write_text("".join(f"pdq {v}\n" for v in sorted(versions[name][1])))
                publish_feed(source, root / name, key, list_name=name)
        files.trickle["/a-slow/delta-1-2.jsonl.gz"] = 0.25
        try:
            yield Setup(home, server, files, versions, hang)
        finally:
            hang.set()


def test_a_slow_list_times_out_alone_and_keeps_its_entries(setup: Setup) -> None:
    before = setup.checkpoint("a-slow")
    with Store.open(setup.home / "store.sqlite3") as store:
        started = time.monotonic()
        results = sync_lists(store, deadline_seconds=DEADLINE)
        elapsed = time.monotonic() - started
    by_name = {r.list_name: r for r in results}
    assert list(by_name) == ["a-slow", "b-fast", "c-file", "d-missing", "e-silent"]

    slow = by_name["a-slow"]
    assert slow.timed_out and not slow.ok
    assert "SyncTimeoutError" in str(slow.error) and "deadline of 3 s" in str(slow.error)
    assert "delta-1-2.jsonl.gz" in str(slow.error)
    assert setup.entries("a-slow") == setup.versions["a-slow"][0]
    assert setup.checkpoint("a-slow") == before

    silent = by_name["e-silent"]
    assert silent.timed_out and setup.entries("e-silent") == set()

    fast = by_name["b-fast"]
    assert fast.ok and fast.seconds < DEADLINE * 0.8, fast  # not held up by the slow ones
    assert setup.entries("b-fast") == setup.versions["b-fast"][1]
    assert by_name["c-file"].ok
    missing = by_name["d-missing"]
    assert not missing.ok and not missing.timed_out and "HTTP 404" in str(missing.error)
    # Concurrent: the whole run takes about one deadline, not one per slow list.
    assert DEADLINE <= elapsed < DEADLINE + 5.0, elapsed


def test_a_failure_in_one_list_stops_the_others_promptly(setup: Setup) -> None:
    def progress(done: int, total: int | None) -> None:
        if done:  # only the file list gets this far
            raise RuntimeError("a bug in a progress callback")

    with Store.open(setup.home / "store.sqlite3") as store:
        list_file = Path(store.get_list("c-file").source or "")
        list_file.write_text(list_file.read_text() + f"pdq {PDQ_A}\n")
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="a bug in a progress callback"):
            sync_lists(store, ["a-slow", "c-file"], deadline_seconds=120, on_progress=progress)
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed  # a-slow's thread stopped too, long before its deadline
    assert setup.entries("a-slow") == setup.versions["a-slow"][0]


def test_sync_command_reports_which_list_timed_out(setup: Setup) -> None:
    started = time.monotonic()
    result = run("sync", "--deadline", str(DEADLINE), "--home", str(setup.home), timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "TIMED OUT" in rows["a-slow"] and "previous entries kept" in rows["a-slow"]
    assert "TIMED OUT" in rows["e-silent"]
    assert rows["b-fast"].endswith(" ok") and rows["c-file"].endswith(" ok")
    assert "TIMED OUT" not in rows["d-missing"] and "HTTP 404" in rows["d-missing"]
    assert elapsed < DEADLINE + 15.0  # process start-up, imports and the index refresh included
    assert setup.entries("a-slow") == setup.versions["a-slow"][0]
    assert setup.entries("b-fast") == setup.versions["b-fast"][1]

    as_json = run("sync", "a-slow", "--json", "--deadline", "1", "--home", str(setup.home))
    (record,) = [json.loads(x) for x in as_json.stdout.splitlines()]
    assert record["timed_out"] is True and as_json.returncode == 2
    assert "deadline of 1 s" in record["error"]


def test_deadline_default_is_documented_and_checked() -> None:
    help_text = run("sync", "--help").stdout
    assert "--deadline SECONDS" in help_text and "(default: 900)" in help_text
    refused = run("sync", "--deadline", "0")
    assert refused.returncode == 2 and "--deadline takes a positive number" in refused.stderr


def test_a_paged_source_keeps_the_pages_applied_before_its_deadline(tmp_path: Path) -> None:
    with LocalServer() as server, Store.open(tmp_path / "store.sqlite3") as store:
        tcap = FakeTcap(server)
        tcap.add(PDQ_A, "PDQ", "jpg")
        tcap.add(PDQ_B, "PDQ", "jpg")
        tcap.add(PDQ_A, "PDQ", "jpg", deleted=True)
        page_one = f"{tcap.records[1]['updated_on']},{tcap.records[1]['id']}"
        answer = tcap.hash_list

        def trickle_page_two(req: Request) -> Reply:
            reply = answer(req)
            if req.query.get("after") == [page_one]:
                reply.trickle = 0.05
            return reply

        server.routes["/api/hash-list/v2/all"] = trickle_page_two
        store.add_list("tcap", kind=ListKind.BLOCK, source=f"tcap:?base_url={server.url}/")
        creds = Credentials.discover(environ={"UPLOADSCAN_TCAP_TOKEN": TOKEN})
        with pytest.raises(SyncTimeoutError, match=r"deadline of 1\.5 s reached while downloading"):
            sync_list(store, "tcap", credentials=creds, deadline_seconds=1.5)
        # Page one was applied whole, with its checkpoint; page two not at all.
        assert {e.value for e in store.list_entries("tcap")} == {PDQ_A, PDQ_B}
        assert store.get_list("tcap").checkpoint == page_one
        assert store.get_list("tcap").last_sync is None
        server.routes["/api/hash-list/v2/all"] = answer
        sync_list(store, "tcap", credentials=creds, deadline_seconds=10)
        assert {e.value for e in store.list_entries("tcap")} == {PDQ_B}
        assert store.get_list("tcap").last_sync is not None
