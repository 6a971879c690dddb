"""Lists built from the platform's own media: add, match, remove, confirm-and-add, export.

Real data directories, media the tests draw and encode themselves (Pillow, PyAV), the real CLI
in subprocesses.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from _media import CLIP_A, CLIP_B, fixture
from PIL import Image, ImageOps

import uploadscan
from uploadscan import Action, ConfigError, Scanner
from uploadscan.hashing._vpdq import read_vpdq

TIMEOUT = 180


def photo(seed: int, size: tuple[int, int] = (800, 600), cells: int = 8) -> Image.Image:
    """Smooth colour blobs (``cells`` across), different for every seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (cells * 3 // 4, cells, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def video(seed: int, seconds: float = 4.0, size: tuple[int, int] = (320, 240)) -> bytes:
    """An H.264 clip: a slow pan over a picture, two scenes, 10 frames a second."""
    rng = np.random.default_rng(seed)
    scenes = [np.asarray(photo(int(rng.integers(1 << 30)), (640, 480), 24)) for _ in range(2)]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        frames = int(seconds * 10)
        for i in range(frames):
            scene = scenes[0 if i < frames // 2 else 1]
            x = i * 4 % 200
            crop = np.ascontiguousarray(scene[100 : 100 + size[1], x : x + size[0]])
            frame = av.VideoFrame.from_ndarray(crop, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uploadscan.cli", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=dict(os.environ),
    )


@pytest.fixture
def scanner(tmp_path: Path) -> Scanner:
    scanner = Scanner.open(tmp_path / "home")
    scanner.add_list("ours", kind="block", source="local:")
    return scanner


def test_own_image_matches_its_edited_copies_until_removed(scanner: Scanner) -> None:
    original = jpeg(photo(1))
    with scanner:
        entry = scanner.add_media("ours", original, labels=["christchurch"], entry_id="case-17")
        assert entry.entry_id == "case-17"
        assert {"md5", "sha256", "pdq"} <= set(entry.counts)
        exact = scanner.scan(original)
        assert exact.action is Action.BLOCK
        edited = jpeg(ImageOps.mirror(photo(1).resize((400, 300))), quality=60)
        verdict = scanner.scan(edited)
        assert verdict.action is Action.BLOCK
        assert {m.hash_type for m in verdict.matches} >= {"pdq"}
        assert all(m.external_id == "case-17" for m in verdict.matches)
        assert all("christchurch" in m.labels for m in verdict.matches)
        # An own list never goes stale and never needs a sync.
        assert not any("sync" in r for r in verdict.reasons)
        assert scanner.scan(jpeg(photo(2))).action is Action.ALLOW
        assert scanner.remove_media("ours", "case-17") == sum(entry.counts.values())
        assert scanner.scan(edited).action is Action.ALLOW
        with pytest.raises(ConfigError, match="no entry"):
            scanner.remove_media("ours", "case-17")


def test_own_video_matches_a_reencoded_copy(scanner: Scanner, tmp_path: Path) -> None:
    clip = video(3)
    with scanner:
        entry = scanner.add_media("ours", clip)
        assert entry.entry_id == uploadscan.hash_file(clip).sha256  # default: the SHA-256
        assert entry.counts.get("pdq", 0) >= 2  # the video's frames
        assert entry.counts.get("tmk") == 1  # and the whole video
        # Re-encoded smaller: another file, the same moments.
        copy = tmp_path / "copy.mp4"
        with av.open(io.BytesIO(clip)) as source, av.open(str(copy), "w") as out:
            stream = out.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = 240, 180, "yuv420p"
            for index, frame in enumerate(source.decode(video=0)):
                small = frame.reformat(width=240, height=180)
                # Timestamps of its own: frames left without one all land at 0 s, a 0.1 s
                # video to ffmpeg (and to the decoder, which keeps ffmpeg's clock).
                small.pts, small.time_base = index, Fraction(1, 10)
                for packet in stream.encode(small):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        verdict = scanner.scan(copy)
        assert verdict.action is Action.BLOCK, verdict.reasons
        assert any(m.video == entry.entry_id for m in verdict.matches)
        assert any(
            m.hash_type == "tmk" and m.external_id == entry.entry_id for m in verdict.matches
        )
        assert scanner.scan(video(4)).action is Action.ALLOW


def test_media_goes_only_on_own_lists(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("")
    with Scanner.open(tmp_path / "home") as scanner:
        scanner.add_list("synced", kind="block", source=str(tmp_path / "list.txt"))
        with pytest.raises(ConfigError, match="synced"):
            scanner.add_media("synced", jpeg(photo(5)))
        scanner.add_list("ours", kind="block", source="local:")
        flat = jpeg(Image.new("RGB", (400, 300), (120, 120, 120)))
        entry = scanner.add_media("ours", flat)
        assert "pdq" not in entry.counts and entry.counts["md5"] == 1
        assert any("too flat" in r or "degenerate" in r for r in entry.skipped)
        with pytest.raises(uploadscan.MediaError):
            scanner.add_media("ours", b"\xff\xd8\xff\xe0 truncated")
        # Syncing everything leaves own lists alone.
        assert all(r.list_name != "ours" for r in scanner.sync())


def test_confirm_adds_the_upload_to_an_own_list_in_one_step(tmp_path: Path) -> None:
    upload = jpeg(photo(6))
    other = jpeg(photo(7))
    (tmp_path / "watch.txt").write_text(f"md5 {uploadscan.hash_file(upload).md5}\n")
    with Scanner.open(tmp_path / "home") as scanner:
        scanner.add_list("watch", kind="review", source=str(tmp_path / "watch.txt"))
        scanner.add_list("ours", kind="block", source="local:")
        scanner.sync()
        verdict = scanner.scan(upload)
        assert verdict.action is Action.REVIEW
        with pytest.raises(ConfigError, match="not the upload"):
            scanner.review(verdict.id, "confirm", add_to="ours", media=other)
        record = scanner.review(verdict.id, "confirm", add_to="ours", media=upload)
        assert [e.list_name for e in record.review_effects] == ["ours"]
        # Edited copies of the confirmed upload are now blocked by the platform's own list.
        edited = jpeg(photo(6).resize((500, 375)), quality=50)
        assert scanner.scan(edited).action is Action.BLOCK
        # Overturned after all: what the confirmation added goes again.
        scanner.review(verdict.id, "overturn")
        assert scanner.scan(edited).action is Action.ALLOW


def test_cli_add_media_remove_entry_export_and_review(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    pictures = []
    for seed in (11, 12):
        path = tmp_path / f"p{seed}.jpg"
        path.write_bytes(jpeg(photo(seed)))
        pictures.append(path)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(video(13))
    out = cli("lists", "add", "ours", "--kind", "block", "--source", "local:", "--home", home)
    assert out.returncode == 0, out.stderr
    assert "add-media" in out.stdout
    out = cli("lists", "add-media", "ours", *map(str, pictures), "--label", "isis", "--home", home)
    assert out.returncode == 0, out.stderr
    out = cli("lists", "add-media", "ours", str(clip), "--id", "video-1", "--json", "--home", home)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["entry_id"] == "video-1"
    bad = cli("lists", "add-media", "ours", *map(str, pictures), "--id", "x", "--home", home)
    assert bad.returncode == 2 and "one file" in bad.stderr

    scan = cli("scan", str(pictures[0]), str(clip), "--home", home)
    assert scan.returncode == 1, scan.stderr
    assert [json.loads(line)["action"] for line in scan.stdout.splitlines()] == [
        "block",
        "block",
    ]

    exported = tmp_path / "export"
    out = cli("lists", "export", "ours", str(exported), "--home", home)
    assert out.returncode == 0, out.stderr
    lines = (exported / "ours.txt").read_text().splitlines()
    listed = {line.split()[0] for line in lines if not line.startswith("#")}
    assert listed == {"md5", "sha256", "pdq"}
    assert sum(line.startswith("pdq ") for line in lines) == 2  # the two pictures
    # The video's TMK leaves as the reference's own file layout, not as a line.
    assert (exported / "tmk" / "video-1.tmk").read_bytes()[:12] == b"TMK1FVECPDQF"
    frames = read_vpdq(exported / "videos" / "video-1.txt")
    assert len(frames) >= 2 and all(f.quality >= 50 for f in frames)
    # The exported file is a list others (and this library) can sync: it matches the same.
    other_home = str(tmp_path / "other")
    added = cli(
        "lists", "add", "mirror", "--source", str(exported / "ours.txt"), "--home", other_home
    )
    assert added.returncode == 0, added.stderr
    assert cli("sync", "--home", other_home).returncode == 0
    again = cli("scan", str(pictures[1]), "--home", other_home)
    assert again.returncode == 1

    removed = cli("lists", "remove-entry", "ours", "video-1", "--home", home)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(cli("scan", str(clip), "--home", home).stdout)["action"] == "allow"


def _reencode(source: Path, target: Path, size: tuple[int, int], crf: str) -> Path:
    """``source``'s picture re-encoded smaller and at another quality (no audio): another
    file, the same moments, as a re-upload would be."""
    with av.open(str(source)) as original, av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": crf})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for index, frame in enumerate(original.decode(video=0)):
            small = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            small.pts, small.time_base = index, Fraction(1, 10)
            for packet in stream.encode(small):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return target


def test_own_fixture_video_blocks_its_reencoded_copy_by_tmk_and_exports_tmk_files(
    tmp_path: Path,
) -> None:
    clip = fixture(CLIP_A)  # the bundled H.264 fixture, 320x240, 8 s
    copy = _reencode(clip, tmp_path / "copy.mp4", (240, 180), crf="30")
    home = str(tmp_path / "home")
    out = cli("lists", "add", "ours", "--kind", "block", "--source", "local:", "--home", home)
    assert out.returncode == 0, out.stderr
    out = cli("lists", "add-media", "ours", str(clip), "--id", "case-9", "--label", "attack",
              "--json", "--home", home)  # fmt: skip
    assert out.returncode == 0, out.stderr
    added = json.loads(out.stdout)["added"]
    assert added["tmk"] == 1 and added["pdq"] >= 2  # the whole video and its frames

    with Scanner.open(home) as scanner:
        verdict = scanner.scan(copy)
        assert verdict.action is Action.BLOCK, verdict.reasons
        (tmk,) = [m for m in verdict.matches if m.hash_type == "tmk"]
        assert (tmk.list_name, tmk.external_id, tmk.labels) == ("ours", "case-9", ("attack",))
        assert tmk.evidence is not None
        assert tmk.evidence["level1"] >= 0.9 and tmk.evidence["level2"] >= 0.9, tmk.evidence
        assert any(m.hash_type == "pdq" and m.video == "case-9" for m in verdict.matches)
        assert scanner.scan(fixture(CLIP_B)).action is Action.ALLOW

    # Exported for sharing: the TMK as the reference-layout .tmk file, one per entry.
    exported = tmp_path / "export"
    out = cli("lists", "export", "ours", str(exported), "--home", home)
    assert out.returncode == 0, out.stderr
    tmk_file = exported / "tmk" / "case-9.tmk"
    assert tmk_file.read_bytes() == uploadscan.hash_file(clip).tmk
    assert not any(line.startswith("tmk") for line in (exported / "ours.txt").read_text().split())
    # Another platform lists the folder of .tmk files and blocks the re-encoded copy too.
    other = str(tmp_path / "other")
    out = cli("lists", "add", "shared", "--source", str(exported / "tmk"), "--home", other)
    assert out.returncode == 0, out.stderr
    assert cli("sync", "--home", other).returncode == 0
    scan = cli("scan", str(copy), "--home", other)
    assert scan.returncode == 1, scan.stderr
    matches = json.loads(scan.stdout)["matches"]
    assert [(m["hash_type"], m["external_id"]) for m in matches] == [("tmk", "case-9")]

    # Removed from the list, the next export no longer carries the video's files.
    assert cli("lists", "remove-entry", "ours", "case-9", "--home", home).returncode == 0
    out = cli("lists", "export", "ours", str(exported), "--home", home)
    assert out.returncode == 0, out.stderr
    assert not tmk_file.exists() and not (exported / "videos" / "case-9.txt").exists()
    assert "removed" in out.stdout
