"""TMK+PDQF values from list files: ``.tmk`` files and directories of them, CSV and JSON lines
carrying a value as base64 of the file or as ThreatExchange's ``HASH_TMK`` text, hostile files.

Values are our hasher's ``.tmk`` files of the bundled fixture videos (``_tmk_values``); the
lists are real files synced into a real store, the CLI runs as a subprocess.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import tracemalloc
from pathlib import Path

import pytest
from _cli import run
from _tmk_values import CLIP_A, CLIP_B, fixture_tmk

from uploadscan import SyncError
from uploadscan.hashing._tmk_format import MAX_TMK_BYTES, encode_text
from uploadscan.hashtypes import Md5HashType
from uploadscan.store._lists import ListKind
from uploadscan.store._store import Store
from uploadscan.sync import sync_list

MD5_A, _ = Md5HashType.example_values


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(tmp_path / "home" / "store.db") as s:
        yield s


def _ids(store: Store, name: str = "l") -> dict[tuple[str, str], str | None]:
    return {(e.hash_type, e.value): e.external_id for e in store.list_entries(name)}


def _text(video: str) -> str:
    return encode_text(fixture_tmk(video))


def test_a_tmk_file_and_a_directory_of_them_are_lists(store: Store, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "case-1.tmk").write_bytes(fixture_tmk(CLIP_A))
    (videos / "case-2.tmk.gz").write_bytes(gzip.compress(fixture_tmk(CLIP_B)))
    (videos / "more.txt").write_text(f"md5 {MD5_A}\n", encoding="utf-8")  # its own format
    store.add_list("l", kind=ListKind.BLOCK, source=str(videos))
    result = sync_list(store, "l")
    assert _ids(store) == {
        ("tmk", _text(CLIP_A)): "case-1",  # the file name is the entry id
        ("tmk", _text(CLIP_B)): "case-2",
        ("md5", MD5_A): None,
    }
    assert result.added == 3
    # Stored as the .tmk file's own bytes.
    (entry,) = [e for e in store.list_entries("l", "tmk") if e.external_id == "case-1"]
    assert entry.value.startswith("TMK1FVECPDQF|")

    assert sync_list(store, "l").batches == 0  # unchanged files are not applied again
    (videos / "case-2.tmk.gz").unlink()
    assert sync_list(store, "l").removed == 1

    single = tmp_path / "one.tmk"
    single.write_bytes(fixture_tmk(CLIP_B))
    store.add_list("one", kind=ListKind.REVIEW, source=f"file://{single}?labels=partner")
    sync_list(store, "one")
    (only,) = store.list_entries("one")
    assert (only.hash_type, only.value, only.external_id) == ("tmk", _text(CLIP_B), "one")
    assert only.labels == ("partner",)


def _header_field(data: bytes, index: int, value: int) -> bytes:
    """``data`` with the int32 header field ``index`` (0 = fps ... 4 = frame count) set."""
    offset = 12 + 4 * index
    return data[:offset] + struct.pack("<i", value) + data[offset + 4 :]


def _nan_at_end(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<f", float("nan"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda d: d[:-8], "implies"),  # truncated
        (lambda d: _header_field(d, 1, 16), "implies"),  # counts that lie about the size
        (lambda d: _header_field(d, 3, 64), "feature dimension"),
        (_nan_at_end, "NaN"),
        (lambda d: d + bytes(MAX_TMK_BYTES), "over"),  # bounded read of a huge file
        # A gzip bomb: 64 MB of zeros behind the magic, read no further than the bound.
        (lambda d: gzip.compress(d[:32] + bytes(64 << 20), compresslevel=1), "over"),
        (lambda d: gzip.compress(d)[:-200], "cannot read"),  # a truncated gzip stream
    ],
    ids=["truncated", "lying-header", "dimension", "nan", "huge", "gzip-bomb", "bad-gzip"],
)
def test_hostile_tmk_files_name_the_file_and_apply_nothing(
    store: Store, tmp_path: Path, content: object, message: str
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "good.tmk").write_bytes(fixture_tmk(CLIP_A))
    store.add_list("l", kind=ListKind.BLOCK, source=str(videos))
    sync_list(store, "l")
    before = (_ids(store), store.get_list("l").checkpoint, store.version())

    assert callable(content)
    (videos / "zz-bad.tmk").write_bytes(content(fixture_tmk(CLIP_B)))
    with pytest.raises(SyncError, match=rf"zz-bad\.tmk: .*{message}"):
        sync_list(store, "l")
    assert (_ids(store), store.get_list("l").checkpoint, store.version()) == before


def test_unlistable_and_mislabelled_tmk_files(store: Store, tmp_path: Path) -> None:
    # A well-formed value of nothing (no frames) would match nothing: skipped and counted.
    empty = tmp_path / "empty.tmk"
    empty.write_bytes(_header_field(fixture_tmk(CLIP_A), 4, 0))
    store.add_list("l", kind=ListKind.BLOCK, source=str(empty))
    result = sync_list(store, "l")
    assert _ids(store) == {}
    assert result.skipped == {"tmk degenerate (would match near-blank media)": 1}
    # format=tmk on a file that is not one: refused, naming it.
    text = tmp_path / "list.txt"
    text.write_text(f"md5 {MD5_A}\n", encoding="utf-8")
    store.set_source("l", f"file://{text}?format=tmk")
    with pytest.raises(SyncError, match=r"list\.txt: .*not a TMK"):
        sync_list(store, "l")


def test_csv_and_json_lines_carry_base64_files_or_hash_tmk_text(
    store: Store, tmp_path: Path
) -> None:
    as_base64 = base64.b64encode(fixture_tmk(CLIP_A)).decode()  # base64 -w0 clip_a.tmk
    as_text = _text(CLIP_B)  # ThreatExchange's HASH_TMK indicator
    csv_file = tmp_path / "videos.csv"
    csv_file.write_text(
        f"hash_type,value,labels,id\ntmk,{as_base64},attack,v1\ntmk,{as_text},,v2\n",
        encoding="utf-8",
    )
    store.add_list("l", kind=ListKind.BLOCK, source=str(csv_file))
    sync_list(store, "l")
    expected = {("tmk", _text(CLIP_A)): "v1", ("tmk", _text(CLIP_B)): "v2"}
    assert _ids(store) == expected  # stored in the one canonical form

    jsonl = tmp_path / "videos.jsonl"
    rows = [
        {"hash_type": "tmk", "value": as_text, "id": "v2"},
        {"hash_type": "tmk", "value": as_base64, "labels": ["attack"], "id": "v1"},
    ]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    store.set_source("l", str(jsonl))
    assert sync_list(store, "l").unchanged == 2
    assert _ids(store) == expected

    # python-threatexchange's name for the type, in its one-hash-per-line file.
    te_file = tmp_path / "list.txt"
    te_file.write_text(f"tmk_pdqf {as_text}\n", encoding="utf-8")
    store.set_source("l", str(te_file))
    sync_list(store, "l")
    assert set(_ids(store)) == {("tmk", _text(CLIP_B))}

    csv_file.write_text(
        f"hash_type,value\ntmk,{as_text}\ntmk,{as_base64[:-7]}\n",  # the second one cut short
        encoding="utf-8",
    )
    store.set_source("l", str(csv_file))
    with pytest.raises(SyncError, match=r"videos\.csv, line 3: .*(base64|implies)"):
        sync_list(store, "l")
    csv_file.write_text(f'hash_type,value\ntmk,"{"A" * (2 << 20)}\n', encoding="utf-8")
    with pytest.raises(SyncError, match=r"videos\.csv, line \d+: "):
        sync_list(store, "l")
    assert set(_ids(store)) == {("tmk", _text(CLIP_B))}


def test_cli_lists_add_a_tmk_file_and_a_directory_then_scan(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "case-1.tmk").write_bytes(fixture_tmk(CLIP_A))
    (videos / "case-2.tmk").write_bytes(fixture_tmk(CLIP_B))
    single = tmp_path / "case-2.tmk"
    single.write_bytes(fixture_tmk(CLIP_B))
    for name, kind, source in (("vids", "block", videos), ("one", "review", single)):
        out = run("lists", "add", name, "--kind", kind, "--source", str(source), "--home", home)
        assert out.returncode == 0, out.stderr
    out = run("sync", "--home", home)
    assert out.returncode == 0, out.stderr
    shown = run("lists", "show", "--json", "--home", home)
    counts = {r["name"]: r["by_type"] for r in map(json.loads, shown.stdout.splitlines())}
    assert counts == {"vids": {"tmk": 2}, "one": {"tmk": 1}}

    from _media import fixture

    scan = run("scan", str(fixture(CLIP_A)), str(fixture(CLIP_B)), "--home", home)
    assert scan.returncode == 1, scan.stderr
    verdicts = [json.loads(line) for line in scan.stdout.splitlines()]
    assert [v["action"] for v in verdicts] == ["block", "block"]
    for verdict, entry in zip(verdicts, ("case-1", "case-2"), strict=True):
        tmk = [m for m in verdict["matches"] if m["hash_type"] == "tmk"]
        assert {m["external_id"] for m in tmk if m["list"] == "vids"} == {entry}
        assert all(m["evidence"]["level1"] >= 0.99 and m["evidence"]["level2"] >= 0.99 for m in tmk)
    # The review list's one video matches only the second upload.
    assert [any(m["list"] == "one" for m in v["matches"]) for v in verdicts] == [False, True]


def test_a_tmk_gzip_bomb_costs_bounded_memory(store: Store, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tmk.gz"
    # 256 MB of zeros behind a real header: about 250 KB on disk.
    bomb.write_bytes(gzip.compress(fixture_tmk(CLIP_A)[:32] + bytes(256 << 20), compresslevel=6))
    store.add_list("l", kind=ListKind.BLOCK, source=str(bomb))
    tracemalloc.start()
    try:
        with pytest.raises(SyncError, match=r"bomb\.tmk\.gz: over"):
            sync_list(store, "l")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_TMK_BYTES, peak  # the bounded read, never the 256 MB
