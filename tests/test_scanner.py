"""Scanner end to end: real images and videos, a real data directory, lists synced from files.

List hashes are computed with the reference ``pdqhash`` on the full-resolution decode (and
hashlib), never with uploadscan, so a bug in our hashing cannot hide behind matching itself.
The media is the bundled fixtures (video lists: their vPDQ files, made by Meta's ``vpdq``); the
extended corpus adds real photos and ThreatExchange's sample videos and hashes.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _media import CLIP_A, CLIP_B, FIXTURES, fixture, vpdq_file
from _reference import reference_frames, reference_pdq
from PIL import Image, ImageOps

import uploadscan
from uploadscan import Action, Scanner
from uploadscan._review import feedback, record_review, review_queue
from uploadscan._video_rule import compare_videos
from uploadscan.hashing._vpdq import read_vpdq
from uploadscan.store._audit import DecisionRecord

LISTED = ["scene_a.jpg", "scene_c.png", "scene_d.jpg"]
UNRELATED = ["scene_b.jpg", "scene_e.jpg", "scene_f.png"]
REAL_LISTED = ["kodak/kodim03.png", "kodak/kodim07.png", "kodak/kodim15.png"]
REAL_UNRELATED = ["kodak/kodim01.png", "kodak/kodim20.png", "scikit-image/astronaut.png"]


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_list(path: Path, folder: Path, names: list[str]) -> None:
    lines = []
    for name in names:
        file = folder / name
        lines.append(f"pdq {reference_pdq(Image.open(file))[0]}")
        lines.append(f"md5 {hashlib.md5(file.read_bytes()).hexdigest()}")
    path.write_text("\n".join(lines) + "\n")


def open_scanner(tmp_path: Path, folder: Path, listed: list[str]) -> Scanner:
    list_file = tmp_path / "block.txt"
    write_list(list_file, folder, listed)
    s = Scanner.open(tmp_path / "home")
    s.add_list("block", kind="block", source=str(list_file))
    results = s.sync()
    assert [r.ok for r in results] == [True]
    return s


@pytest.fixture()
def scanner(tmp_path: Path) -> Scanner:
    return open_scanner(tmp_path, FIXTURES, LISTED)


def test_exact_file_is_blocked_by_md5_and_pdq(scanner: Scanner) -> None:
    verdict = scanner.scan(fixture(LISTED[0]))
    assert verdict.action is Action.BLOCK
    types = {m.hash_type for m in verdict.matches}
    assert types == {"md5", "pdq"}
    pdq_match = next(m for m in verdict.matches if m.hash_type == "pdq")
    assert pdq_match.list_name == "block" and pdq_match.distance <= 31
    assert verdict.list_versions["block"] >= 1
    assert json.loads(json.dumps(verdict.to_dict()))["action"] == "block"


TRANSFORMS = pytest.mark.parametrize(
    "transform",
    [
        lambda im: jpeg(im, 30),
        lambda im: jpeg(im.resize((im.width // 3, im.height // 3))),
        lambda im: jpeg(ImageOps.mirror(im)),
        lambda im: jpeg(ImageOps.flip(im)),
        lambda im: jpeg(im.rotate(90, expand=True)),
        lambda im: jpeg(im.rotate(270, expand=True)),
        lambda im: jpeg(ImageOps.grayscale(im)),
        lambda im: jpeg(ImageOps.pad(im, (im.width, im.width), color="black")),
        lambda im: jpeg(ImageOps.expand(im, border=60, fill="white")),
    ],
    ids=["q30", "third", "mirror", "flip", "rot90", "rot270", "grey", "letterbox", "padding"],
)


@TRANSFORMS
def test_altered_copies_are_caught(scanner: Scanner, transform) -> None:  # type: ignore[no-untyped-def]
    for name in LISTED:
        verdict = scanner.scan(transform(Image.open(fixture(name))))
        assert verdict.action is Action.BLOCK, (name, verdict.to_dict())
        assert all(m.hash_type == "pdq" for m in verdict.matches)


@pytest.mark.extended
@TRANSFORMS
def test_altered_copies_of_real_photos_are_caught(
    tmp_path: Path, data_dir: Path, transform
) -> None:  # type: ignore[no-untyped-def]
    with open_scanner(tmp_path, data_dir, REAL_LISTED) as scanner:
        for name in REAL_LISTED:
            verdict = scanner.scan(transform(Image.open(data_dir / name)))
            assert verdict.action is Action.BLOCK, (name, verdict.to_dict())
            assert all(m.hash_type == "pdq" for m in verdict.matches)
        for name in REAL_UNRELATED:
            assert scanner.scan(transform(Image.open(data_dir / name))).action is Action.ALLOW


def test_unrelated_images_are_allowed(scanner: Scanner) -> None:
    for name in UNRELATED:
        verdict = scanner.scan(fixture(name))
        assert verdict.action is Action.ALLOW, verdict.to_dict()
        assert verdict.matches == ()
        assert set(verdict.hashes) >= {"md5", "sha256", "pdq"}


def test_dihedral_queries_can_be_turned_off(scanner: Scanner) -> None:
    mirrored = jpeg(ImageOps.mirror(Image.open(fixture(LISTED[1]))))
    with Scanner.open(scanner.home, dihedral=False) as plain:
        assert plain.scan(mirrored).action is Action.ALLOW
    assert scanner.scan(mirrored).action is Action.BLOCK


def test_input_kinds(scanner: Scanner) -> None:
    path = fixture(LISTED[2])
    data = path.read_bytes()
    for media in (path, str(path), data, io.BytesIO(data)):
        assert scanner.scan(media).action is Action.BLOCK


def test_bad_media_gets_fail_mode_or_raises_in_strict(scanner: Scanner) -> None:
    verdict = scanner.scan(b"\xff\xd8\xff\xe0garbage", filename="photo.jpg")
    assert verdict.action is Action.REVIEW
    assert verdict.errors and verdict.errors[0].type == "CorruptMediaError"
    assert verdict.errors[0].message.startswith("photo.jpg: ")
    assert "fail mode" in " ".join(verdict.reasons)
    with pytest.raises(uploadscan.MediaError):
        scanner.scan(b"\xff\xd8\xff\xe0garbage", strict=True)
    with Scanner.open(scanner.home, fail_mode="allow") as lenient:
        assert lenient.scan(b"\xff\xd8\xff\xe0garbage").action is Action.ALLOW
    # Not media at all (empty, text): no error, exact hashes only, the non-media action.
    for data in (b"", b"this is not an image"):
        other = scanner.scan(data)
        assert (other.action, other.errors) == (Action.ALLOW, ())
        assert "only exact hashes" in " ".join(other.reasons)
    with Scanner.open(scanner.home, non_media="review") as careful:
        assert careful.scan(b"this is not an image").action is Action.REVIEW


def test_allowlist_overrides(scanner: Scanner, tmp_path: Path) -> None:
    allow_file = tmp_path / "allow.txt"
    write_list(allow_file, FIXTURES, LISTED[:1])
    scanner.add_list("documentary", kind="allow", source=str(allow_file))
    scanner.sync(["documentary"])
    verdict = scanner.scan(fixture(LISTED[0]))
    assert verdict.action is Action.ALLOW
    assert {m.list_name for m in verdict.matches} == {"block", "documentary"}
    assert "overrides" in verdict.reasons[0]
    assert scanner.scan(fixture(LISTED[1])).action is Action.BLOCK


def test_distance_band_and_review_list(scanner: Scanner) -> None:
    from uploadscan import ListSettings

    copy = jpeg(Image.open(fixture(LISTED[0])).resize((200, 150)), 25)
    distance = min(m.distance for m in scanner.scan(copy).matches)
    assert distance > 0
    scanner.store.update_settings("block", ListSettings(pdq_action_distance=distance - 1))
    verdict = scanner.scan(copy)
    assert verdict.action is Action.REVIEW
    assert verdict.matches[0].action is Action.REVIEW


def test_stale_list_uses_fail_mode(scanner: Scanner) -> None:
    from uploadscan import ListSettings

    scanner.store.update_settings("block", ListSettings(max_age_seconds=0.01))
    time.sleep(0.05)
    verdict = scanner.scan(fixture(UNRELATED[0]))
    assert verdict.action is Action.REVIEW
    assert any("not synced" in r for r in verdict.reasons)


def test_lookup_precomputed_hashes(scanner: Scanner) -> None:
    listed = reference_pdq(Image.open(fixture(LISTED[1])))[0]
    flipped = f"{int(listed, 16) ^ ((1 << 20) - 1):064x}"  # 20 bits away: still a match
    verdict = scanner.lookup({"pdq": flipped})
    assert verdict.action is Action.BLOCK
    assert verdict.matches[0].distance == 20
    far = f"{int(listed, 16) ^ ((1 << 40) - 1):064x}"
    assert scanner.lookup({"pdq": [far]}).action is Action.ALLOW
    with pytest.raises(uploadscan.InvalidHashError):
        scanner.lookup({"pdq": "xyz"})
    with pytest.raises(uploadscan.UnknownHashTypeError):
        scanner.lookup({"photodna": "00"})


def test_audit_review_and_feedback(scanner: Scanner) -> None:
    from uploadscan import ListSettings

    scanner.store.update_settings("block", ListSettings(pdq_action_distance=0))
    copy = jpeg(Image.open(fixture(LISTED[2])).resize((300, 400)), 40)
    verdict = scanner.scan(copy)
    assert verdict.action is Action.REVIEW
    queue = review_queue(scanner.store)
    assert [item.verdict_id for item in queue] == [verdict.id]
    assert queue[0].sha256 == hashlib.sha256(copy).hexdigest()
    record_review(scanner.store, verdict.id, "overturn", note="art project", allowlist="fp")
    assert review_queue(scanner.store) == []
    rows = feedback(scanner.store)
    assert rows and rows[0]["list"] == "block" and rows[0]["reason"] == "art project"
    # The overturned content is now allowed; the original listed image is still blocked.
    assert scanner.scan(copy).action is Action.ALLOW
    assert scanner.scan(fixture(LISTED[0])).action is Action.BLOCK


def test_no_content_is_stored(scanner: Scanner) -> None:
    data = fixture(LISTED[0]).read_bytes()
    scanner.scan(data)
    store_file = scanner.home / "store.sqlite3"
    scanner.close()
    raw = store_file.read_bytes() + b"".join(
        p.read_bytes() for p in store_file.parent.glob("store.sqlite3-*")
    )
    assert data[1000:1064] not in raw


def test_threads_share_one_scanner(scanner: Scanner) -> None:
    payloads = [fixture(n).read_bytes() for n in LISTED + UNRELATED]
    expected = [Action.BLOCK] * len(LISTED) + [Action.ALLOW] * len(UNRELATED)
    failures: list[object] = []

    def work() -> None:
        for _ in range(3):
            for payload, want in zip(payloads, expected, strict=True):
                got = scanner.scan(payload).action
                if got is not want:
                    failures.append((got, want))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def _scan_in_child(home: str, path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    with Scanner.open(home) as s:
        queue.put(s.scan(path).action.value)


def test_processes_share_one_data_directory(scanner: Scanner) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=_scan_in_child, args=(str(scanner.home), str(fixture(p)), queue))
        for p in (LISTED[0], UNRELATED[0])
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(queue.get(timeout=5) for _ in procs) == ["allow", "block"]


def test_video_list_from_vpdq_files(tmp_path: Path) -> None:
    """Lists in vPDQ's format, made by Meta's vpdq; uploads are the videos and re-encodings."""
    copy = tmp_path / "copy.mp4"
    _reencode(fixture(CLIP_A), copy, (256, 192))
    # By the reference (pdqhash on every frame) the copy is the listed video.
    assert compare_videos(read_vpdq(vpdq_file(CLIP_A)), reference_frames(copy)).is_match
    with Scanner.open(tmp_path / "home") as s:
        s.add_list("clip-a", kind="block", source=str(vpdq_file(CLIP_A)))
        s.add_list("clip-b", kind="review", source=str(vpdq_file(CLIP_B)))
        assert all(r.ok for r in s.sync())
        verdict = s.scan(copy)
        assert verdict.action is Action.BLOCK, verdict.to_dict()
        match = verdict.matches[0]
        assert match.list_name == "clip-a" and match.coverage is not None
        assert match.coverage >= 0.8 and match.timestamps
        assert s.scan(fixture(CLIP_B)).action is Action.REVIEW
        assert s.scan(fixture("anim.gif")).action is Action.ALLOW
        assert s.scan(fixture(LISTED[0])).action is Action.ALLOW


def _reencode(source: Path, target: Path, size: tuple[int, int]) -> None:
    """``source`` resized and re-encoded as H.264 at a low bitrate, every frame kept."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": "32"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for frame in inp.decode(video=0):
            picture = frame.to_image().resize(size)
            new = av.VideoFrame.from_image(picture)
            new.pts = frame.pts
            new.time_base = frame.time_base
            out.mux(stream.encode(new))
        out.mux(stream.encode(None))


@pytest.mark.extended
def test_video_list_from_reference_vpdq(tmp_path: Path, data_dir: Path) -> None:
    hashes = data_dir / "threatexchange/vpdq/sample-hashes"
    videos = data_dir / "threatexchange/tmk/sample-videos"
    with Scanner.open(tmp_path / "home") as s:
        s.add_list("chair", kind="block", source=str(hashes / "chair-orig-22-sd-bar.txt"))
        s.add_list("pattern", kind="review", source=str(hashes / "pattern-hd-no-bar.txt"))
        assert all(r.ok for r in s.sync())
        chair = s.scan(videos / "chair-20-sd-bar.mp4")
        assert chair.action is Action.BLOCK
        match = chair.matches[0]
        assert match.video == "chair-orig-22-sd-bar" and match.coverage is not None
        assert match.coverage >= 0.8 and match.timestamps
        # Bars added to the listed video: only the trimmed frame hashes match.
        assert s.scan(videos / "pattern-sd-grey-bar.mp4").action is Action.REVIEW
        assert s.scan(videos / "doorknob-hd-no-bar.mp4").action is Action.ALLOW
        assert s.scan(videos / "test-padded-dimensions.mp4").action is Action.ALLOW


def test_cli_scan_exit_statuses(scanner: Scanner, tmp_path: Path) -> None:
    home = str(scanner.home)
    scanner.close()

    def run(*files: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "uploadscan.cli", "scan", "--home", home, *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    clean = run(fixture(UNRELATED[0]))
    assert clean.returncode == 0, clean.stderr
    flagged = run(fixture(UNRELATED[0]), fixture(LISTED[0]))
    assert flagged.returncode == 1
    lines = [json.loads(line) for line in flagged.stdout.splitlines()]
    assert [line["action"] for line in lines] == ["allow", "block"]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0garbage")
    broken = run(corrupt)
    assert broken.returncode == 2


def test_config_file_sets_defaults_and_rejects_typos(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text(
        json.dumps({"fail_mode": "block", "limits": {"max_bytes": 1000}})
    )
    with Scanner.open(home) as s:
        assert s.fail_mode is Action.BLOCK
        verdict = s.scan(b"\x89PNG\r\n\x1a\n" + b"\0" * 2000)
        assert verdict.action is Action.BLOCK
        assert verdict.errors[0].type == "MediaTooLargeError"
    with Scanner.open(home, fail_mode="review") as s:  # keyword arguments win
        assert s.fail_mode is Action.REVIEW
    (home / "config.json").write_text(json.dumps({"fail_mod": "allow"}))
    with pytest.raises(uploadscan.ConfigError, match=r"unknown setting.*'fail_mod'"):
        Scanner.open(home)


def test_audit_retention_purges_old_decisions(scanner: Scanner) -> None:
    scanner.scan(fixture(UNRELATED[0]))
    scanner.store.record_decision(DecisionRecord("old", Action.ALLOW, time.time() - 40 * 86400))
    assert len(scanner.store.decisions()) == 2
    with Scanner.open(scanner.home, audit_retention_days=30) as s:
        assert [d.verdict_id for d in s.store.decisions()] != ["old"]
        assert len(s.store.decisions()) == 1
