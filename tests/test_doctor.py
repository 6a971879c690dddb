"""``uploadscan doctor``: finds damaged index files and a damaged store, repairs what is derived.

Real data directories: a list synced from a file, index files built by the matcher, then
damaged the ways disks and people damage them (bytes flipped in an index file, the file
deleted, the manifest truncated, pages of the SQLite file overwritten). After ``--repair`` a
fresh ``Scanner`` must answer exactly as before the damage.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import pytest

from uploadscan import Scanner
from uploadscan._doctor import diagnose
from uploadscan.cli import _doctor as doctor_cli

PDQS = [f"{random.Random(i).getrandbits(256):064x}" for i in range(3000)]
MD5S = [f"{random.Random(10_000 + i).getrandbits(128):032x}" for i in range(500)]


def _run(home: Path, *extra: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    doctor_cli.register(parser.add_subparsers())
    args = parser.parse_args(["doctor", "--home", str(home), "--json", *extra])
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = args.handler(args)
    return status, out.getvalue()


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    list_file = tmp_path / "list.txt"
    list_file.write_text("".join(f"pdq {h}\n" for h in PDQS) + "".join(f"md5 {h}\n" for h in MD5S))
    home = tmp_path / "home"
    with Scanner.open(home, audit=False) as scanner:
        scanner.add_list("local", kind="block", source=str(list_file))
        (result,) = scanner.sync()
        assert result.ok and result.added == len(PDQS) + len(MD5S)
    return home


def _answers_correctly(home: Path) -> None:
    with Scanner.open(home, audit=False) as scanner:
        for value in (PDQS[17], PDQS[-1]):
            assert [m.value for m in scanner.lookup({"pdq": value}).matches] == [value]
        assert [m.value for m in scanner.lookup({"md5": MD5S[3]}).matches] == [MD5S[3]]
        assert scanner.lookup({"md5": "0" * 32}).matches == ()


def _index_files(home: Path) -> dict[str, Path]:
    manifest = json.loads((home / "index" / "manifest.json").read_text())
    return {t: home / "index" / e["file"] for t, e in manifest["types"].items()}


def test_healthy_directory(home: Path) -> None:
    status, out = _run(home)
    report = json.loads(out)
    assert status == 0, report
    assert report["status"] == "healthy" and report["findings"] == []


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        "flip-pdq",
        "flip-md5",
        "delete-pdq",
        "truncate-pdq",
        "manifest-garbage",
        "manifest-deleted",
        "manifest-count",
    ],
)
def test_damaged_index_is_reported_then_repaired(home: Path, damage: str) -> None:
    files = _index_files(home)
    manifest = home / "index" / "manifest.json"
    if damage.startswith("flip-"):
        _flip_bytes(files[damage[5:]])
    elif damage == "delete-pdq":
        files["pdq"].unlink()
    elif damage == "truncate-pdq":
        files["pdq"].write_bytes(files["pdq"].read_bytes()[:1000])
    elif damage == "manifest-garbage":
        manifest.write_text('{"format": 1, "types": {"pdq": ')
    elif damage == "manifest-deleted":
        manifest.unlink()
    elif damage == "manifest-count":
        data = json.loads(manifest.read_text())
        data["types"]["pdq"]["count"] += 1
        manifest.write_text(json.dumps(data))

    status, out = _run(home)
    report = json.loads(out)
    assert status == 1, report
    assert report["findings"] and all(f["area"] == "index" for f in report["findings"])
    assert all(f["repairable"] and not f["repaired"] for f in report["findings"])

    status, out = _run(home, "--repair")
    report = json.loads(out)
    assert status == 1 and all(f["repaired"] for f in report["findings"]), report
    status, out = _run(home)
    assert status == 0, out
    _answers_correctly(home)


def test_corrupt_store_cannot_be_repaired_and_says_how_to_recover(home: Path) -> None:
    store = home / "store.sqlite3"
    data = bytearray(store.read_bytes())
    page = 4096
    for offset in range(2 * page, min(len(data), 6 * page)):
        data[offset] = 0x5A
    store.write_bytes(bytes(data))
    for extra in ((), ("--repair",)):
        status, out = _run(home, *extra)
        report = json.loads(out)
        assert status == 2, report
        (finding,) = report["findings"]
        assert finding["area"] == "store" and not finding["repairable"]
        assert "move it aside" in finding["message"] and "uploadscan sync" in finding["message"]


def test_store_that_is_not_a_database(home: Path) -> None:
    (home / "store.sqlite3").write_bytes(b"this is not a database" * 100)
    for name in ("store.sqlite3-wal", "store.sqlite3-shm"):
        (home / name).unlink(missing_ok=True)
    status, out = _run(home)
    assert status == 2
    assert "move it aside" in json.loads(out)["findings"][0]["message"]


def test_text_report(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _flip_bytes(_index_files(home)["pdq"])
    parser = argparse.ArgumentParser()
    doctor_cli.register(parser.add_subparsers())
    args = parser.parse_args(["doctor", "--home", str(home)])
    assert args.handler(args) == 1
    text = capsys.readouterr().out
    assert "PROBLEM (uploadscan doctor --repair fixes it) [index]" in text
    assert "checksum" in text


def test_stale_and_never_synced_lists(home: Path, tmp_path: Path) -> None:
    with Scanner.open(home, audit=False) as scanner:
        scanner.add_list("later", kind="review", source=str(tmp_path / "missing.txt"))
        scanner.add_list("manual", kind="block")  # no source: never reported
    report = diagnose(home)
    messages = [f.message for f in report.findings]
    assert report.exit_status == 1 and len(messages) == 1
    assert "'later' has never completed a sync" in messages[0]
    report = diagnose(home, now=time.time() + 8 * 24 * 3600)
    messages = sorted(f.message for f in report.findings)
    assert len(messages) == 2 and "'local' was last synced" in messages[1]
    assert (
        diagnose(home, max_age_seconds=30 * 24 * 3600, now=time.time() + 8 * 86400)
        .findings[0]
        .message.startswith("list 'later'")
    )
