"""The ``uploadscan`` command as a user runs it: a real subprocess on the bundled fixtures.

``hash`` is compared with the references (hashlib, ``pdqhash``, and for ``--vpdq`` the vPDQ
file Meta's ``vpdq`` wrote for the same video); lists are built from reference hashes, synced
and scanned through the CLI; ``demo`` runs as the README's quick start does. (``scan`` exit
statuses: tests/test_scanner.py; ``review`` and ``sync`` beside a running app:
tests/test_examples.py; ``doctor``: tests/test_doctor.py.)
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from _media import CLIP_A, fixture, vpdq_file
from _reference import hamming, reference_pdq
from PIL import Image

from uploadscan._video_rule import compare_videos
from uploadscan.hashing._vpdq import read_vpdq


def uploadscan(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uploadscan.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )


def test_hash_gives_json_lines_for_images_videos_and_other_files(tmp_path: Path) -> None:
    files = [fixture("scene_d.jpg"), fixture(CLIP_A), fixture("MANIFEST.md")]
    proc = uploadscan("hash", *files, "--vpdq", tmp_path / "vpdq")
    assert proc.returncode == 0, proc.stderr
    image, video, other = (json.loads(line) for line in proc.stdout.splitlines())
    for record, path in zip((image, video, other), files, strict=True):
        data = path.read_bytes()
        assert record["path"] == str(path)
        assert record["md5"] == hashlib.md5(data).hexdigest()
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["size"] == len(data)
    expected, quality = reference_pdq(files[0])
    assert hamming(image["pdq"], expected) <= 10 and image["pdq_quality"] == quality
    assert (image["width"], image["height"]) == (480, 640)
    assert video["media_type"] == "video/mp4" and len(video["frames"]) >= 4
    assert (other["media_type"], other["pdq"]) == ("application/octet-stream", None)

    # The vPDQ file: every frame, within PDQ's threshold of vpdq's own, and the same video.
    written = read_vpdq(Path(video["vpdq"]))
    golden = read_vpdq(vpdq_file(CLIP_A))
    assert Path(video["vpdq"]) == tmp_path / "vpdq" / "clip_a.txt"
    assert [f.timestamp for f in written] == [f.timestamp for f in golden]
    for ours, theirs in zip(written, golden, strict=True):
        if theirs.quality >= 50:
            assert hamming(ours.pdq, theirs.pdq) <= 31, theirs
    assert compare_videos(golden, written).listed_coverage == 1.0
    assert compare_videos(written, golden).listed_coverage == 1.0


def test_hash_reports_unreadable_files_and_bad_arguments(tmp_path: Path) -> None:
    proc = uploadscan("hash", fixture("scene_a.jpg"), tmp_path / "missing.jpg")
    assert proc.returncode == 2
    good, bad = (json.loads(line) for line in proc.stdout.splitlines())
    assert good["pdq"] and "error" not in good
    assert bad["error"]["type"] == "UploadReadError"
    assert "missing.jpg" in proc.stderr
    proc = uploadscan("hash", fixture("scene_a.jpg"), "--extra", "nosuchhash")
    assert proc.returncode == 2 and proc.stdout == ""


def test_lists_sync_scan_and_report(tmp_path: Path) -> None:
    home = tmp_path / "home"
    listed = fixture("scene_e.jpg")
    list_file = tmp_path / "list.txt"
    list_file.write_text(f"pdq {reference_pdq(listed)[0]}\n")
    added = uploadscan(
        "lists", "add", "terror", "--source", list_file, "--kind", "block", "--home", home
    )
    assert added.returncode == 0, added.stderr
    synced = uploadscan("--home", home, "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    [result] = [json.loads(line) for line in synced.stdout.splitlines()]
    assert (result["list"], result["added"], result["error"]) == ("terror", 1, None)
    shown = uploadscan("lists", "show", "--json", "--home", home)
    assert [json.loads(line)["name"] for line in shown.stdout.splitlines()] == ["terror"]

    copy = tmp_path / "copy.png"
    with Image.open(listed) as image:
        image.resize((320, 213)).save(copy)
    scanned = uploadscan("scan", copy, fixture("scene_a.jpg"), "--home", home)
    assert scanned.returncode == 1, scanned.stderr
    actions = [json.loads(line)["action"] for line in scanned.stdout.splitlines()]
    assert actions == ["block", "allow"]

    report = uploadscan("report", "--format", "json", "--home", home)
    assert report.returncode == 0, report.stderr
    counts = json.loads(report.stdout)
    assert (counts["total"], counts["by_action"]["block"], counts["by_action"]["allow"]) == (
        2,
        1,
        1,
    )
    assert counts["by_list"] == {"terror": {"block": 1}}


def test_demo_flags_every_altered_copy_and_no_unrelated_image(tmp_path: Path) -> None:
    proc = uploadscan("demo", "--home", tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    found = re.search(
        r"altered copies flagged: (\d+)/(\d+); unrelated images flagged: (\d+)/", proc.stdout
    )
    assert found, proc.stdout
    flagged, altered, false_flags = map(int, found.groups())
    assert flagged == altered > 0
    assert false_flags == 0
