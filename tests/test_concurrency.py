"""Scanners in several processes keep answering, consistently, while a large delta is synced.

Two reader processes with three threads each call ``Scanner.lookup`` in a loop (one process
records every decision in the audit log, so it writes to the store too) while another process
runs ``uploadscan sync`` on a list file whose new version adds 30 000 entries and removes
5 000. Every verdict names the list version it was answered from (``verdict.list_versions``),
and each lookup asks for three hashes at once: one in both versions, one only in the new
version and one only in the old. So every verdict can be checked on its own:

- the hash in both versions always matches;
- the added hash matches exactly when the verdict's version is the delta's version or later;
- the removed hash matches exactly when it is earlier;
- and no thread ever sees an exception.

A verdict answered from one version but labelled with another fails the check.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from uploadscan import Scanner

BASE = 100_000
ADDED = 30_000
REMOVED = 5_000
LIST = "big"
READERS = 2
THREADS = 3

READER = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    from uploadscan import Scanner

    home, stop, probes, audit = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
    scanner = Scanner.open(home, audit=audit == "1")
    query = {"pdq": probes["added"], "md5": probes["common_md5"]}
    query_removed = {"pdq": probes["removed"], "md5": probes["common_md5"]}
    records, errors = [], []

    def work():
        n = 0
        while not stop.exists():
            for kind, q in (("added", query), ("removed", query_removed)):
                started = time.perf_counter()
                try:
                    verdict = scanner.lookup(q)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                values = sorted(m.value for m in verdict.matches if m.list_name == "big")
                records.append([kind, verdict.list_versions.get("big"), values,
                                time.perf_counter() - started])
            n += 1

    threads = [threading.Thread(target=work) for _ in range(int(sys.argv[5]))]
    print("ready", flush=True)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scanner.close()
    print(json.dumps({"records": records, "errors": errors}), flush=True)
    """
)


def _md5(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


@pytest.mark.slow  # no media: runs once in CI, in the pass with the extended corpus
def test_lookups_stay_consistent_while_a_large_delta_syncs(tmp_path: Path) -> None:
    rng = random.Random(42)
    shared = [_pdq(rng) for _ in range(BASE - REMOVED)]
    removed = [_pdq(rng) for _ in range(REMOVED)]
    added = [_pdq(rng) for _ in range(ADDED)]
    common_md5 = _md5(rng)
    probes = {"added": added[1234], "removed": removed[321], "common_md5": common_md5}
    list_file = tmp_path / "list.txt"

    def write(entries: list[str]) -> None:
        lines = [f"pdq {h}\n" for h in entries] + [f"md5 {common_md5}\n"]
        list_file.write_text("".join(lines))

    home = tmp_path / "home"
    write(shared + removed)
    with Scanner.open(home, audit=False) as scanner:
        scanner.add_list(LIST, kind="block", source=str(list_file))
        (result,) = scanner.sync()
        assert result.ok, result.error
        old_version = scanner.store.get_list(LIST).version
    write(shared + added)

    stop = tmp_path / "stop"
    script = tmp_path / "reader.py"
    script.write_text(READER)
    readers = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(home),
                str(stop),
                json.dumps(probes),
                "1" if i == 0 else "0",
                str(THREADS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(READERS)
    ]
    try:
        for reader in readers:
            assert reader.stdout is not None
            assert reader.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # lookups before the sync starts
        sync = subprocess.run(
            [sys.executable, "-m", "uploadscan.cli", "sync", "--home", str(home)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sync.returncode == 0, sync.stderr
        time.sleep(1.0)  # and after it
    finally:
        stop.touch()
    outputs: list[dict[str, Any]] = []
    for reader in readers:
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))

    with Scanner.open(home, audit=False) as scanner:
        new_version = scanner.store.get_list(LIST).version
    assert new_version > old_version

    errors = [e for o in outputs for e in o["errors"]]
    assert errors == []
    records = [r for o in outputs for r in o["records"]]
    seen_versions: dict[int, int] = {}
    bad = []
    for kind, version, values, _ in records:
        seen_versions[version] = seen_versions.get(version, 0) + 1
        if version not in (old_version, new_version):
            bad.append(f"unknown version {version}")
            continue
        if common_md5 not in values:
            bad.append(f"v{version}: the common hash did not match")
        probe = probes[kind]
        in_version = (version >= new_version) == (kind == "added")
        if (probe in values) != in_version:
            bad.append(f"v{version}: {kind} hash matched={probe in values}")
    assert not bad, f"{len(bad)} inconsistent verdicts of {len(records)}: {bad[:10]}"
    # Both versions were served while the readers ran, or the test proved nothing.
    assert seen_versions.get(old_version, 0) > 0 and seen_versions.get(new_version, 0) > 0
    slowest = max(r[3] for r in records)
    print(
        f"\n{len(records)} lookups during sync, versions {seen_versions}, slowest {slowest:.3f} s"
    )
