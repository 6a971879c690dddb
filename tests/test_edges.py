"""Trust at the edges: no upload escapes an exact list, no list fails open, and the CLI treats
a new user's mistakes as usage errors.

Everything here runs on media the tests draw themselves, real data directories, real list
files and the real CLI in subprocesses.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _media import CLIP_A, fixture
from _reference import reference_pdq
from PIL import Image

import uploadscan
from uploadscan import Action, Scanner
from uploadscan._review import feedback, record_review
from uploadscan.store._audit import ReviewStatus
from uploadscan.store._lists import EntryUpsert

TIMEOUT = 120


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A picture with structure (smooth colour blobs), different for every seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + b"% manifesto text\n" * 200


def zip_file() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a picture " * 100)
    return buffer.getvalue()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uploadscan.cli", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
    )


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ----------------------------------------------------------------------------- exact hashes


@pytest.fixture
def exact_lists(tmp_path: Path) -> tuple[Scanner, dict[str, bytes]]:
    """A block list of file digests (a PDF, a ZIP, random bytes, a truncated JPEG) next to a
    PDQ list, as a platform subscribed to TCAP and GIFCT would have."""
    listed_jpeg = jpeg(photo(1))
    uploads = {
        "pdf": pdf(),
        "zip": zip_file(),
        "random": np.random.default_rng(5).bytes(50_000),
        "truncated_jpeg": listed_jpeg[: len(listed_jpeg) // 2],
    }
    lines = [f"md5 {md5(data)}" for data in uploads.values()]
    (tmp_path / "files.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "images.txt").write_text(f"pdq {reference_pdq(photo(2))[0]}\n")
    scanner = Scanner.open(tmp_path / "home")
    scanner.add_list("files", kind="block", source=str(tmp_path / "files.txt"))
    scanner.add_list("images", kind="block", source=str(tmp_path / "images.txt"))
    assert all(result.ok for result in scanner.sync())
    return scanner, uploads


def test_file_hashes_of_any_upload_meet_exact_lists(
    exact_lists: tuple[Scanner, dict[str, bytes]], tmp_path: Path
) -> None:
    scanner, uploads = exact_lists
    with scanner:
        for name, data in uploads.items():
            path = tmp_path / f"upload-{name}"
            path.write_bytes(data)
            for media in (data, path, io.BytesIO(data)):  # bytes, streamed path, file object
                verdict = scanner.scan(media)
                assert verdict.action is Action.BLOCK, (name, verdict.reasons)
                assert [m.hash_type for m in verdict.matches] == ["md5"], name
                assert verdict.hashes["sha256"] == (hashlib.sha256(data).hexdigest(),), name
        # The decision log keeps the SHA-256 of every upload, media or not.
        assert all(d.sha256 for d in scanner.store.decisions())


def test_fail_mode_cannot_undo_an_exact_block(tmp_path: Path) -> None:
    listed = jpeg(photo(3))
    broken = listed[: len(listed) // 3]
    (tmp_path / "list.txt").write_text(f"md5 {md5(broken)}\npdq {reference_pdq(photo(4))[0]}\n")
    with Scanner.open(tmp_path / "home", fail_mode="allow") as scanner:
        scanner.add_list("l", kind="block", source=str(tmp_path / "list.txt"))
        scanner.sync()
        verdict = scanner.scan(broken)
        assert verdict.errors[0].type == "CorruptMediaError"
        assert verdict.action is Action.BLOCK  # the digest matched; decoding failed


def test_non_media_is_allowed_by_default_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text(f"pdq {reference_pdq(photo(5))[0]}\n")
    with Scanner.open(tmp_path / "home") as scanner:
        scanner.add_list("l", kind="block", source=str(tmp_path / "list.txt"))
        scanner.sync()
        for data in (pdf(), zip_file(), b"plain text"):
            verdict = scanner.scan(data)
            assert (verdict.action, verdict.errors) == (Action.ALLOW, ())
            assert any("only exact hashes" in r for r in verdict.reasons)
        corrupt = jpeg(photo(6))[:300]
        assert scanner.scan(corrupt).action is Action.REVIEW  # recognised media: fail mode
    with Scanner.open(tmp_path / "home", non_media="review") as careful:
        assert careful.scan(pdf()).action is Action.REVIEW
    (tmp_path / "home" / "config.json").write_text(json.dumps({"non_media": "block"}))
    with Scanner.open(tmp_path / "home") as configured:
        assert configured.scan(zip_file()).action is Action.BLOCK


def test_recognised_video_that_fails_to_decode_takes_the_fail_mode(tmp_path: Path) -> None:
    # An MP4 header (the bundled clip's first 32 bytes) and then noise: a video by its magic,
    # so not "non-media"; its digests still meet the exact lists.
    clip = fixture(CLIP_A).read_bytes()
    broken = clip[:32] + np.random.default_rng(7).bytes(200_000)
    listed = clip[:32] + np.random.default_rng(8).bytes(200_000)
    # A PDQ entry too: with only digest lists nothing needs decoding, so nothing can fail.
    pdq = reference_pdq(photo(30))[0]
    (tmp_path / "list.txt").write_text(f"md5 {md5(listed)}\npdq {pdq}\n")
    with Scanner.open(tmp_path / "home") as scanner:
        scanner.add_list("l", kind="block", source=str(tmp_path / "list.txt"))
        assert all(result.ok for result in scanner.sync())
    for fail_mode in (Action.REVIEW, Action.BLOCK):
        with Scanner.open(tmp_path / "home", fail_mode=fail_mode, non_media="allow") as scanner:
            verdict = scanner.scan(broken)
            assert verdict.action is fail_mode, verdict.reasons
            assert verdict.errors and verdict.hashes["md5"] == (md5(broken),)
            assert not any("only exact hashes" in r for r in verdict.reasons)
            assert verdict.media_type.startswith("video/")
    with Scanner.open(tmp_path / "home", fail_mode="allow") as lenient:
        assert lenient.scan(listed).action is Action.BLOCK  # the digest, whatever the decode


def test_non_media_over_max_bytes_takes_the_fail_mode_not_the_non_media_action(
    tmp_path: Path,
) -> None:
    # Past max_bytes nothing is hashed, so the exact lists were not consulted: that is
    # incomplete matching (the fail mode), never "not media, allowed".
    small, big = pdf(), pdf() * 20
    assert len(small) < 10_000 < len(big)
    (tmp_path / "list.txt").write_text(f"md5 {md5(small)}\n")
    (tmp_path / "big.pdf").write_bytes(big)
    with Scanner.open(tmp_path / "home", limits={"max_bytes": 10_000}) as scanner:
        scanner.add_list("l", kind="block", source=str(tmp_path / "list.txt"))
        scanner.sync()
        assert scanner.scan(small).action is Action.BLOCK  # within the limit: matched
        for media in (big, tmp_path / "big.pdf", io.BytesIO(big)):
            verdict = scanner.scan(media)
            assert verdict.action is Action.REVIEW, verdict.reasons
            assert [e.type for e in verdict.errors] == ["MediaTooLargeError"]
            assert not any("only exact hashes" in r for r in verdict.reasons)


def test_hash_file_gives_digests_of_any_file(tmp_path: Path) -> None:
    for data in (pdf(), zip_file(), b"", np.random.default_rng(1).bytes(3_000_000)):
        path = tmp_path / "f"
        path.write_bytes(data)
        result = uploadscan.hash_file(path)
        assert (result.md5, result.sha256) == (md5(data), hashlib.sha256(data).hexdigest())
        assert result.pdq is None and not result.is_media
    out = cli("hash", str(tmp_path / "f"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["md5"] == md5(data)


# ----------------------------------------------------------------------------- list health


def _set_last_sync(home: Path, name: str, when: float | None) -> None:
    with sqlite3.connect(home / "store.sqlite3") as conn:
        conn.execute("UPDATE lists SET last_sync = ? WHERE name = ?", (when, name))


def test_a_list_that_never_synced_fails_closed_and_says_so(tmp_path: Path) -> None:
    listed = jpeg(photo(7))
    (tmp_path / "list.txt").write_text(f"md5 {md5(listed)}\n")
    home = tmp_path / "home"
    with Scanner.open(home) as scanner:
        scanner.add_list("gifct", kind="block", source=str(tmp_path / "list.txt"))
        # Never synced: the upload it should block is not silently allowed.
        verdict = scanner.scan(listed)
        assert verdict.action is Action.REVIEW
        assert any("gifct" in r and "never completed a sync" in r for r in verdict.reasons)
        # The same for precomputed hashes.
        assert scanner.lookup({"md5": md5(listed)}).action is Action.REVIEW
        scanner.sync()
        assert scanner.scan(listed).action is Action.BLOCK
        assert scanner.scan(jpeg(photo(8))).reasons == ()


def test_a_review_list_that_never_synced_takes_the_fail_mode_too(tmp_path: Path) -> None:
    with Scanner.open(tmp_path / "home", fail_mode="block") as scanner:
        scanner.add_list("watch", kind="review", source=str(tmp_path / "missing.txt"))
        scanner.add_list("fp", kind="allow", source=str(tmp_path / "missing.txt"))
        verdict = scanner.scan(jpeg(photo(15)))
        assert verdict.action is Action.BLOCK
        reasons = " ".join(verdict.reasons)
        assert "watch" in reasons and "never completed a sync" in reasons
        assert "fp" not in reasons  # an allow list cannot make an upload slip through


def test_warn_only_lists_are_named_without_the_fail_mode(tmp_path: Path) -> None:
    with Scanner.open(tmp_path / "home") as scanner:
        scanner.add_list(
            "optional",
            kind="review",
            source=str(tmp_path / "missing.txt"),
            settings={"warn_only": True},
        )
        verdict = scanner.scan(jpeg(photo(9)))
        assert verdict.action is Action.ALLOW
        assert any("optional" in r and "warn only" in r for r in verdict.reasons)


def test_network_lists_go_stale_by_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = "https://lists.example.org/feed/?key=" + "A" * 43 + "="
    with Scanner.open(home) as scanner:
        hash_list = scanner.add_list("feed", kind="block", source=source)
        assert hash_list.settings.max_age_seconds is None
        scanner.store.apply_batch("feed", [], mark_synced=True)
        assert scanner.scan(jpeg(photo(10))).action is Action.ALLOW
    _set_last_sync(home, "feed", time.time() - 3 * 86400)  # three days without a sync
    with Scanner.open(home) as scanner:
        verdict = scanner.scan(jpeg(photo(10)))
        assert verdict.action is Action.REVIEW
        assert any("maximum age" in r for r in verdict.reasons)
        # A list file has no default maximum age: it changes when its owner changes it.
        (tmp_path / "l.txt").write_text("")
        scanner.add_list("file", kind="block", source=str(tmp_path / "l.txt"))
        scanner.sync(["file"])
    _set_last_sync(home, "file", time.time() - 365 * 86400)
    with Scanner.open(home) as scanner:
        assert not any("file" in r for r in scanner.scan(jpeg(photo(10))).reasons)


def test_doctor_exits_non_zero_for_a_list_that_never_synced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Scanner.open(home) as scanner:
        scanner.add_list("never", kind="block", source=str(tmp_path / "x.txt"))
    out = cli("doctor", "--home", str(home))
    assert out.returncode != 0
    assert "never" in out.stdout + out.stderr


def test_scan_with_no_list_warns_on_stderr(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(jpeg(photo(11)))
    out = cli("scan", str(image), "--home", str(tmp_path / "home"))
    assert out.returncode == 0
    assert "no hash list is configured" in out.stderr
    assert json.loads(out.stdout)["action"] == "allow"


# ----------------------------------------------------------------------------- reviews


def test_changing_a_review_decision_undoes_the_old_one(tmp_path: Path) -> None:
    reviewed = jpeg(photo(12))
    (tmp_path / "watch.txt").write_text(f"md5 {md5(reviewed)}\n")
    with Scanner.open(tmp_path / "home") as scanner:
        scanner.add_list("watch", kind="review", source=str(tmp_path / "watch.txt"))
        scanner.sync()
        first = scanner.scan(reviewed)
        second = scanner.scan(reviewed)
        assert first.action is Action.REVIEW
        store = scanner.store
        record_review(store, first.id, "overturn", note="news", allowlist="fp")
        assert scanner.scan(reviewed).action is Action.ALLOW
        assert [row["verdict_id"] for row in feedback(store)] == [first.id]
        # Changed to confirm: the allowlist entry it added goes, the upload is flagged again,
        # and it is no longer a false-positive report.
        changed = record_review(store, first.id, "confirm")
        assert changed.review_status is ReviewStatus.CONFIRMED
        assert changed.review_effects == ()  # nothing of the overturn is left
        assert scanner.scan(reviewed).action is Action.REVIEW
        assert feedback(store) == []
        # Two overturns add the same entries; undoing one keeps what the other needs.
        record_review(store, first.id, "overturn", allowlist="fp")
        record_review(store, second.id, "overturn", allowlist="fp")
        record_review(store, first.id, "confirm")
        assert scanner.scan(reviewed).action is Action.ALLOW
        record_review(store, second.id, "confirm")  # the last decision that wanted them
        assert scanner.scan(reviewed).action is Action.REVIEW
        # An entry that was on the allow list before any review stays whatever reviews do.
        scanner.store.apply_batch("fp", [EntryUpsert("md5", md5(reviewed))], mark_synced=False)
        record_review(store, first.id, "overturn", allowlist="fp")
        record_review(store, first.id, "confirm")
        assert scanner.scan(reviewed).action is Action.ALLOW


def test_review_cli_speaks_to_people_and_exports_iso_times(tmp_path: Path) -> None:
    reviewed = jpeg(photo(13))
    (tmp_path / "watch.txt").write_text(f"md5 {md5(reviewed)}\n")
    home = tmp_path / "home"
    with Scanner.open(home) as scanner:
        scanner.add_list("watch", kind="review", source=str(tmp_path / "watch.txt"))
        scanner.sync()
        verdict = scanner.scan(reviewed)
    out = cli("review", "decide", verdict.id, "overturn", "--note", "art", "--home", str(home))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"verdict {verdict.id}: overturned")
    exported = cli("review", "export", "--format", "csv", "--home", str(home))
    [row] = list(csv.DictReader(io.StringIO(exported.stdout)))
    parsed = dt.datetime.fromisoformat(row["time"])
    assert parsed.tzinfo is not None and abs(parsed.timestamp() - time.time()) < 600


# ----------------------------------------------------------------------------- the CLI


def test_home_before_or_after_the_subcommand(tmp_path: Path) -> None:
    image = tmp_path / "x.jpg"
    image.write_bytes(jpeg(photo(14)))
    for args in (
        ("--home", str(tmp_path / "h"), "scan", str(image)),
        ("scan", str(image), "--home", str(tmp_path / "h")),
    ):
        out = cli(*args)
        assert out.returncode == 0, out.stderr
    with Scanner.open(tmp_path / "h") as scanner:
        assert len(scanner.store.decisions()) == 2


def test_unreadable_paths_are_usage_errors_not_review_items(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Scanner.open(home) as scanner:
        with pytest.raises(uploadscan.UploadReadError):
            scanner.scan(tmp_path / "missing.jpg")
        with pytest.raises(uploadscan.UploadReadError):
            scanner.scan(tmp_path)
    for target in (tmp_path / "missing.jpg", tmp_path):
        out = cli("scan", str(target), "--home", str(home))
        assert out.returncode == 2
        assert "uploadscan: error:" in out.stderr
        assert json.loads(out.stdout)["error"]["type"] == "UploadReadError"
    with Scanner.open(home) as scanner:
        assert scanner.store.decisions() == []  # nothing entered the log or the review queue


def test_help_states_exit_codes_and_bad_extra_is_one_argument_error(tmp_path: Path) -> None:
    for command in ("scan", "hash"):
        out = cli(command, "--help")
        assert "exit status" in out.stdout and "2 " in out.stdout
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.jpg")
        files[-1].write_bytes(jpeg(photo(20 + i)))
    out = cli("hash", "--extra", "foo", *map(str, files))
    assert out.returncode == 2
    assert out.stdout == ""  # an argument error, not one error per file
    assert out.stderr.count("foo") == 1


def test_the_demo_cleans_up_after_itself(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path)}
    out = cli("demo", env=env)
    assert out.returncode == 0, out.stderr
    assert list(tmp_path.glob("uploadscan-demo-*")) == []
    kept = cli("demo", "--keep", env=env)
    assert kept.returncode == 0
    assert len(list(tmp_path.glob("uploadscan-demo-*"))) == 1
