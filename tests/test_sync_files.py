"""File sources: every format, replace semantics, change detection, and malformed input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from uploadscan import ConfigError, SyncError
from uploadscan.hashtypes import Md5HashType, PdqHashType, Sha256HashType
from uploadscan.store._lists import ListKind
from uploadscan.store._store import Store
from uploadscan.sync import source_from_uri, sync_list

# Reference values from python-threatexchange's signal examples (via the hash types).
PDQ_A, PDQ_B = PdqHashType.example_values
MD5_A, MD5_B = Md5HashType.example_values
SHA_A, SHA_B = Sha256HashType.example_values
BLANK_PDQ = "0" * 64  # a valid PDQ of a flat image: refused for listing


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(tmp_path / "home" / "store.db") as s:
        yield s


def _add(store: Store, source: str, name: str = "l") -> None:
    store.add_list(name, kind=ListKind.BLOCK, source=source)


def _entries(store: Store, name: str = "l") -> dict[tuple[str, str], tuple[str, ...]]:
    return {(e.hash_type, e.value): e.labels for e in store.list_entries(name)}


def test_te_text_format_types_bare_hashes_and_comments(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "list.txt"
    f.write_text(
        "# python-threatexchange local file\n"
        f"pdq {PDQ_A}\n"
        f"video_md5 {MD5_A}\n"
        f"\n{PDQ_B.upper()}\n"  # bare 64 hex: pdq; case normalised
        f"{MD5_B}\n"  # bare 32 hex: md5
        f"sha256 {SHA_A}\n"
        "url https://example.org/\n"  # a type we do not hash: skipped, counted
        f"pdq {BLANK_PDQ}\n",  # degenerate: skipped, counted
        encoding="utf-8",
    )
    _add(store, str(f))
    result = sync_list(store, "l")
    assert _entries(store) == {
        ("pdq", PDQ_A): (),
        ("md5", MD5_A): ("video",),
        ("pdq", PDQ_B): (),
        ("md5", MD5_B): (),
        ("sha256", SHA_A): (),
    }
    assert (result.added, result.removed) == (5, 0)
    assert sum(result.skipped.values()) == 2
    assert any(k.startswith("url") for k in result.skipped)
    assert any("degenerate" in k for k in result.skipped)
    assert store.get_list("l").last_sync is not None


def test_file_is_a_full_snapshot_and_unchanged_file_is_not_reapplied(
    store: Store, tmp_path: Path
) -> None:
    f = tmp_path / "list.txt"
    f.write_text(f"pdq {PDQ_A}\nmd5 {MD5_A}\n", encoding="utf-8")
    _add(store, f"file://{f}")
    sync_list(store, "l")
    version = store.version()

    again = sync_list(store, "l")
    assert again.batches == 0 and again.added == again.removed == 0
    assert store.version() == version

    f.write_text(f"pdq {PDQ_A}\nmd5 {MD5_B}\n", encoding="utf-8")
    changed = sync_list(store, "l")
    assert (changed.added, changed.removed, changed.unchanged) == (1, 1, 1)
    assert set(_entries(store)) == {("pdq", PDQ_A), ("md5", MD5_B)}


def test_malformed_line_names_file_and_line_and_applies_nothing(
    store: Store, tmp_path: Path
) -> None:
    f = tmp_path / "list.txt"
    f.write_text(f"pdq {PDQ_A}\n", encoding="utf-8")
    _add(store, str(f))
    sync_list(store, "l")
    before = (store.get_list("l").checkpoint, store.version())

    f.write_text(f"pdq {PDQ_B}\nmd5 {MD5_A}\npdq f8f8nothex\n", encoding="utf-8")
    with pytest.raises(SyncError, match=r"list\.txt, line 3: .*pdq hash must be 64 hex"):
        sync_list(store, "l")
    assert set(_entries(store)) == {("pdq", PDQ_A)}
    assert (store.get_list("l").checkpoint, store.version()) == before

    f.write_text(f"pdq {PDQ_B} extra\n", encoding="utf-8")
    with pytest.raises(SyncError, match=r"line 1: expected '<signal_type> <hash>'"):
        sync_list(store, "l")
    f.write_text(f"frobnicate {PDQ_B}\n", encoding="utf-8")
    with pytest.raises(SyncError, match=r"line 1: unknown signal type 'frobnicate'"):
        sync_list(store, "l")
    f.write_bytes(b"# ok\n" + b"pdq \xff\xfe\n")
    with pytest.raises(SyncError, match=r"line 2: not valid UTF-8"):
        sync_list(store, "l")
    f.write_text("abcdef\n", encoding="utf-8")
    with pytest.raises(SyncError, match=r"line 1: cannot tell the hash type"):
        sync_list(store, "l")
    assert set(_entries(store)) == {("pdq", PDQ_A)}


def test_threatexchange_csv_export(store: Store, tmp_path: Path) -> None:
    # Columns as written by `threatexchange dataset --csv` (cli/dataset_cmd.py, _print_csv).
    f = tmp_path / "collab.csv"
    f.write_text(
        "signal_type,signal_str,collab,category,tags\n"
        f"pdq,{PDQ_A},Sample Data,POSITIVE_CLASS,terrorism violence\n"
        f"video_md5,{MD5_A},Sample Data,INVESTIGATION_SEED,\n"
        f"pdq,{PDQ_B},Sample Data,NEGATIVE_CLASS,benign\n",
        encoding="utf-8",
    )
    _add(store, str(f))
    result = sync_list(store, "l")
    assert _entries(store) == {
        ("pdq", PDQ_A): ("terrorism", "violence"),
        ("md5", MD5_A): ("video",),
    }
    assert result.skipped == {"negative opinion (NEGATIVE_CLASS)": 1}
    (entry,) = store.list_entries("l", "pdq")
    assert entry.extra == {"collab": "Sample Data"}


def test_generic_csv_with_column_mapping(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "hashes.csv"
    f.write_text(
        f"kind,digest,tags,ref\npdq,{PDQ_A},a;b,r1\nmd5,{MD5_A},,r2\n",
        encoding="utf-8",
    )
    uri = (
        f"file://{f}?hash_type_column=kind&value_column=digest&labels_column=tags"
        "&id_column=ref&labels=partner"
    )
    _add(store, uri)
    sync_list(store, "l")
    got = {(e.hash_type, e.value): (e.labels, e.external_id) for e in store.list_entries("l")}
    assert got == {
        ("pdq", PDQ_A): (("a", "b", "partner"), "r1"),
        ("md5", MD5_A): (("partner",), "r2"),
    }

    f.write_text(f"digest\n{PDQ_A}\n", encoding="utf-8")
    store.set_source("l", f"file://{f}?value_column=digest")
    with pytest.raises(SyncError, match=r"line 1: CSV header lacks the hash type column"):
        sync_list(store, "l")
    store.set_source("l", f"file://{f}?value_column=digest&hash_type=pdq")
    sync_list(store, "l")
    assert set(_entries(store)) == {("pdq", PDQ_A)}


def test_jsonl_and_gzip(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "list.jsonl.gz"
    lines = [
        {"hash_type": "pdq", "value": PDQ_A, "labels": ["x"], "id": 7},
        {"hash_type": "sha256", "value": SHA_B, "labels": "y z"},
    ]
    f.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    _add(store, str(f))
    sync_list(store, "l")
    got = {(e.hash_type, e.value): (e.labels, e.external_id) for e in store.list_entries("l")}
    assert got == {("pdq", PDQ_A): (("x",), "7"), ("sha256", SHA_B): (("y", "z"), None)}

    f.write_bytes(gzip.compress(b'{"hash_type": "pdq", "value": 5}\n'))
    with pytest.raises(SyncError, match=r"list\.jsonl\.gz, line 1: missing or non-string 'value'"):
        sync_list(store, "l")
    f.write_bytes(gzip.compress(b"{not json\n"))
    with pytest.raises(SyncError, match=r"line 1: not valid JSON"):
        sync_list(store, "l")
    assert len(_entries(store)) == 2


def test_vpdq_file_is_one_video_with_frames(store: Store, tmp_path: Path, data_dir: Path) -> None:
    sample = data_dir / "threatexchange" / "vpdq" / "sample-hashes" / "chair-19-sd-bar.txt"
    rows = [line.split(",") for line in sample.read_text().splitlines() if line.strip()]
    good = [r for r in rows if int(r[1]) >= 50]
    target = tmp_path / "chair-19-sd-bar.txt"
    target.write_bytes(sample.read_bytes())
    _add(store, str(target))
    result = sync_list(store, "l")

    entries = list(store.list_entries("l"))
    assert {e.value for e in entries} == {r[2] for r in good}
    # Identical frame hashes share one entry (the store keys entries by value): it names the
    # first such frame and keeps every timestamp, so the video's timeline survives.
    by_value: dict[str, list[list[str]]] = {}
    for r in good:
        by_value.setdefault(r[2], []).append(r)
    assert any(len(group) > 1 for group in by_value.values())  # the sample repeats hashes
    for e in entries:
        group = by_value[e.value]
        frame, _quality, _value, ts = group[0]
        assert e.hash_type == "pdq" and "video" in e.labels
        assert e.external_id == f"chair-19-sd-bar#{frame}"
        assert e.extra == {
            "video": "chair-19-sd-bar",
            "frame": int(frame),
            "timestamp": float(ts),
            "quality": min(int(r[1]) for r in group),
            "timestamps": [float(r[3]) for r in group],
        }
    assert result.skipped.get("vpdq frame quality < 50 (never matched)", 0) == len(rows) - len(good)

    target.write_text(f"0,100,{PDQ_A},0.000\n1,100,{PDQ_B}\n", encoding="utf-8")
    with pytest.raises(SyncError, match=r"line 2: expected 'frame,quality,pdq_hex,timestamp'"):
        sync_list(store, "l")


def test_directory_source_reads_every_file(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "lists"
    d.mkdir()
    (d / "a.txt").write_text(f"pdq {PDQ_A}\n", encoding="utf-8")
    (d / "b.csv").write_text(f"hash_type,value\nmd5,{MD5_A}\n", encoding="utf-8")
    (d / ".hidden").write_text("garbage\n", encoding="utf-8")
    _add(store, str(d))
    sync_list(store, "l")
    assert set(_entries(store)) == {("pdq", PDQ_A), ("md5", MD5_A)}
    (d / "b.csv").unlink()
    result = sync_list(store, "l")
    assert result.removed == 1 and set(_entries(store)) == {("pdq", PDQ_A)}


def test_source_uri_errors() -> None:
    with pytest.raises(ConfigError, match="unknown file source option"):
        source_from_uri("file:///tmp/x.txt?fromat=csv")
    with pytest.raises(ConfigError, match="file format must be one of"):
        source_from_uri("file:///tmp/x.txt?format=xml")
    with pytest.raises(SyncError, match="does not exist"):
        list(source_from_uri("/nonexistent/list.txt").fetch(None))


def test_file_source_alone_streams_its_batch(tmp_path: Path) -> None:
    f = tmp_path / "list.txt"
    f.write_text(f"pdq {PDQ_A}\n", encoding="utf-8")
    (batch,) = list(source_from_uri(str(f)).fetch(None))
    assert batch.replace and batch.checkpoint and batch.checkpoint.startswith("sha256:")
    assert [(u.hash_type, u.value) for u in batch.upserts] == [("pdq", PDQ_A)]
    assert list(source_from_uri(str(f)).fetch(batch.checkpoint)) == []
