"""Batch jobs on a real Dask LocalCluster (2 worker processes on loopback, no dashboard).

The media are the bundled fixtures (``tests/fixtures``), so a fresh clone runs these too. List
hashes come from the reference ``pdqhash`` on the full-resolution decode, hashlib, and Meta's
``vpdq`` (the committed ``clip_a.mp4.vpdq.txt``), never from uploadscan itself. Media is linked
from the fixtures, never copied; the one video made here is a mirrored re-encoding of clip_a.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _media import CLIP_A, CLIP_B, SCENES, fixture, vpdq_file
from _reference import reference_pdq
from PIL import Image, ImageOps
from test_video import Copies

from uploadscan import Action, Scanner, Verdict
from uploadscan.batch import (
    PublishedRecord,
    backfill,
    export_parquet,
    read_parquet_shard,
    retro,
)
from uploadscan.batch._dask import DaskRunner, TaskRunner, open_runner
from uploadscan.store._audit import DecisionOrigin, DecisionRecord

IMAGES = SCENES  # eight photo-like scenes, each its own picture
LISTED_PDQ = ["scene_b.jpg", "scene_e.jpg"]
LISTED_MD5 = ["scene_d.jpg"]
VIDEO_LIST = vpdq_file(CLIP_A)  # Meta's vpdq of clip_a.mp4, every frame
LISTED_VIDEO = "clip_a.mp4.vpdq"  # the video a vPDQ file lists is named after the file
OTHER_VIDEO = CLIP_B


@pytest.fixture(scope="module")
def mirrored_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip_a mirrored and re-encoded: on the list only through its mirrored frame hashes."""
    return Copies(tmp_path_factory.mktemp("batch-video"))["mirror"]


def write_list(path: Path, pdq: list[str], md5: list[str]) -> Path:
    lines = [f"pdq {reference_pdq(fixture(name))[0]}" for name in pdq]
    lines += [f"md5 {hashlib.md5(fixture(name).read_bytes()).hexdigest()}" for name in md5]
    path.write_text("\n".join(lines) + "\n")
    return path


def add_lists(scanner: Scanner, tmp_path: Path, pdq: list[str], md5: list[str]) -> None:
    block = write_list(tmp_path / "block.txt", pdq, md5)
    scanner.add_list("block", kind="block", source=str(block))
    scanner.add_list("videos", kind="review", source=str(VIDEO_LIST))
    assert all(r.ok for r in scanner.sync())


def link_media(target: Path, sources: list[Path], copies: int = 1) -> list[str]:
    """Symlinks to the media (content ids are these link paths)."""
    target.mkdir(parents=True, exist_ok=True)
    out = []
    for copy in range(copies):
        for source in sources:
            link = target / f"{copy:02d}-{source.name}"
            link.symlink_to(source)
            out.append(str(link))
    return sorted(out)


def evidence(verdict: Verdict) -> tuple[str, list[tuple[str, str, int, str | None]]]:
    """Action and matched entries: what must agree between a batch job and ``scan``."""
    return verdict.action.value, sorted(
        (m.list_name, m.value, m.distance, m.video) for m in verdict.matches
    )


def evidence_dict(record: DecisionRecord) -> tuple[str, list[tuple[str, str, int, str | None]]]:
    return record.action.value, sorted(
        (m["list"], m["value"], m["distance"], m.get("video")) for m in record.matches
    )


@pytest.fixture(scope="module")
def runner() -> Iterator[TaskRunner]:
    with open_runner(workers=2) as active:
        assert active.workers == 2
        yield active


def test_backfill_gives_the_verdicts_of_scan(
    runner: TaskRunner, tmp_path: Path, mirrored_video: Path
) -> None:
    paths = link_media(
        tmp_path / "catalogue", [*(fixture(name) for name in IMAGES), mirrored_video]
    )
    with Scanner.open(tmp_path / "batch-home", audit=False) as batch:
        add_lists(batch, tmp_path, LISTED_PDQ, LISTED_MD5)
        items: list[Any] = []
        result = backfill(
            batch, str(tmp_path / "catalogue"), runner=runner, batch_size=3, on_item=items.append
        )
        assert (result.total, result.scanned, result.errors) == (9, 9, 0)
        batch_verdicts = {item.content_id: item.verdict for item in items}
        assert sorted(batch_verdicts) == paths
        audited = batch.store.decisions()
        record = PublishedRecord.open(batch.home / "published.sqlite3")
        assert record.count() == 9
        video_record = record.get(next(p for p in paths if p.endswith(".mp4")))
        assert video_record is not None
        # The video's frame hashes over its whole timeline (8 s, a keyframe every 2 s).
        times = [frame.timestamp for frame in video_record.frames()]
        assert times[0] == 0.0 and times[-1] >= 6.0
        assert max(b - a for a, b in itertools.pairwise(times)) <= 2.0 + 1e-6
        record.close()

        again = backfill(batch, str(tmp_path / "catalogue"), runner=runner)
        assert (again.skipped, again.scanned) == (9, 0)
        assert len(batch.store.decisions()) == len(audited) == 9

    with Scanner.open(tmp_path / "scan-home", audit=False) as single:
        add_lists(single, tmp_path, LISTED_PDQ, LISTED_MD5)
        expected = {path: evidence(single.scan(path)) for path in paths}
    assert {p: evidence(v) for p, v in batch_verdicts.items() if v is not None} == expected
    assert {r.verdict_id: evidence_dict(r) for r in audited} == {
        v.id: evidence(v) for v in batch_verdicts.values() if v is not None
    }
    flagged = {Path(p).name for p, (action, _) in expected.items() if action != "allow"}
    assert flagged == {"00-scene_b.jpg", "00-scene_d.jpg", "00-scene_e.jpg", "00-mirror.mp4"}


def mirrored_jpeg(path: Path) -> bytes:
    buffer = io.BytesIO()
    ImageOps.mirror(Image.open(path)).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_retro_names_exactly_the_newly_listed_content(
    runner: TaskRunner, tmp_path: Path, mirrored_video: Path
) -> None:
    recorded = ["scene_a.jpg", "scene_b.jpg", "scene_c.png", "scene_d.jpg"]
    with Scanner.open(tmp_path / "home") as scanner:
        for name in recorded:
            assert scanner.scan(fixture(name), content_id=f"post/fixtures/{name}").allowed
        mirror = mirrored_jpeg(fixture("scene_e.jpg"))
        scanner.scan(mirror, content_id="post/mirrored")
        scanner.scan(mirrored_video, content_id="post/video")
        scanner.scan(fixture(OTHER_VIDEO), content_id="post/other-video")
        assert len(scanner.store.decisions()) == 7
        before = scanner.store.version()
        # Nothing listed yet: no delta, nothing to report.
        assert retro(scanner, runner=runner).verdicts == []

        # The lists name scene_b (PDQ), scene_e (PDQ of the unmirrored original) and scene_d
        # (MD5 only), plus the vPDQ file of the video the mirrored clip was made from.
        add_lists(scanner, tmp_path, ["scene_b.jpg", "scene_e.jpg"], ["scene_d.jpg"])
        result = retro(scanner, runner=runner, shard_rows=2)
        assert result.since_version == before and result.upto_version == scanner.store.version()
        named = {v.content_id: v for v in result.verdicts}
        assert sorted(named) == [
            "post/fixtures/scene_b.jpg",
            "post/fixtures/scene_d.jpg",
            "post/mirrored",
            "post/video",
        ]
        assert named["post/video"].verdict.action is Action.REVIEW
        assert named["post/video"].verdict.matches[0].video == LISTED_VIDEO
        assert named["post/mirrored"].verdict.action is Action.BLOCK
        assert [m.hash_type for m in named["post/fixtures/scene_d.jpg"].verdict.matches] == ["md5"]

        # The same rules as an upload: scanning the content now gives the same evidence.
        sources = {
            "post/fixtures/scene_b.jpg": fixture("scene_b.jpg"),
            "post/fixtures/scene_d.jpg": fixture("scene_d.jpg"),
            "post/mirrored": mirror,
            "post/video": mirrored_video,
        }
        with Scanner.open(tmp_path / "home", audit=False) as check:
            for content_id, media in sources.items():
                assert evidence(named[content_id].verdict) == evidence(check.scan(media))

        # Audited once; a second run over the same range records nothing new.
        audited = {r.verdict_id for r in scanner.store.decisions()}
        assert {v.verdict.id for v in result.verdicts} <= audited
        assert len(audited) == 7 + 4
        rerun = retro(scanner, runner=runner, since_version=before)
        assert sorted(v.content_id for v in rerun.verdicts) == sorted(named)
        assert not any(v.new for v in rerun.verdicts)
        assert len(scanner.store.decisions()) == 11
        # The default range starts where the last run stopped: nothing new since.
        assert retro(scanner, runner=runner).verdicts == []

        # From Parquet shards: the same content ids.
        with PublishedRecord.open(scanner.home / "published.sqlite3") as record:
            files = export_parquet(record, tmp_path / "parquet", shard_rows=3)
        assert len(files) == 3
        shard = read_parquet_shard(files[0])
        assert shard.content_ids == [
            "post/fixtures/scene_a.jpg",
            "post/fixtures/scene_b.jpg",
            "post/fixtures/scene_c.png",
        ]
        assert shard.item(0).pdq_hash[0] == scanner.scan(fixture("scene_a.jpg")).hashes["pdq"][0]
        from_parquet = retro(
            scanner, runner=runner, since_version=before, parquet=tmp_path / "parquet"
        )
        assert sorted(v.content_id for v in from_parquet.verdicts) == sorted(named)


def _done(checkpoint: Path) -> int:
    if not checkpoint.exists():
        return 0
    try:
        with sqlite3.connect(checkpoint, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM done").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


_KILL_MIDWAY = """
import os, signal, sys, time
from uploadscan import Scanner
from uploadscan.batch import backfill

seen = 0


def kill_midway(item):
    # Item 10 waits past the writer's flush interval, so the 10 are checkpointed when that
    # task ends; item 20 kills the job and its LocalCluster (this process group) before the
    # next flush is due.
    global seen
    seen += 1
    if seen == 10:
        time.sleep(1.5)
    elif seen == 20:
        os.killpg(os.getpgid(0), signal.SIGKILL)


with Scanner.open(sys.argv[1]) as scanner:
    backfill(
        scanner, sys.argv[2], checkpoint=sys.argv[3], workers=2, batch_size=1,
        on_item=kill_midway,
    )
"""


def test_killed_backfill_resumes_without_duplicates(runner: TaskRunner, tmp_path: Path) -> None:
    """The first run starts its own LocalCluster and is killed with it (SIGKILL to the process
    group) mid-way, at a point the job itself picks so the kill never depends on the machine's
    speed; the second resumes on the shared cluster through ``--scheduler``."""
    copies = 3
    paths = link_media(tmp_path / "catalogue", [fixture(name) for name in IMAGES], copies=copies)
    home = tmp_path / "home"
    with Scanner.open(home) as scanner:
        add_lists(scanner, tmp_path, LISTED_PDQ, LISTED_MD5)
    checkpoint = tmp_path / "checkpoint.sqlite3"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILL_MIDWAY,
            str(home),
            str(tmp_path / "catalogue"),
            str(checkpoint),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        start_new_session=True,
    )
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    killed_at = _done(checkpoint)
    assert 10 <= killed_at < 20 < len(paths), killed_at
    base = [
        sys.executable,
        "-m",
        "uploadscan.cli._jobs",
        "backfill",
        str(tmp_path / "catalogue"),
        "--home",
        str(home),
        "--checkpoint",
        str(checkpoint),
        "--batch-size",
        "1",
    ]

    assert isinstance(runner, DaskRunner)
    address = runner.client.scheduler.address
    second = subprocess.run(
        [*base, "--scheduler", address], capture_output=True, text=True, env=env, timeout=120
    )
    assert second.returncode == 1, second.stderr  # listed images are flagged
    assert "\r" not in second.stderr  # no progress bar when piped
    reported = [json.loads(line)["content_id"] for line in second.stdout.splitlines()]
    assert len(reported) == len(set(reported)) <= len(paths) - killed_at

    assert _done(checkpoint) == len(paths)
    with Scanner.open(home, audit=False) as scanner:
        decisions = scanner.store.decisions()
    assert len(decisions) == len(paths)  # one decision per content id, none twice
    assert len({d.verdict_id for d in decisions}) == len(paths)
    assert {d.origin for d in decisions} == {DecisionOrigin.BACKFILL}
    flagged = sum(d.action is not Action.ALLOW for d in decisions)
    assert flagged == 3 * copies  # scene_b, scene_e (PDQ) and scene_d (MD5), every copy
    with PublishedRecord.open(home / "published.sqlite3") as record:
        assert record.count() == len(paths)
    with sqlite3.connect(checkpoint) as conn:
        marked = dict(conn.execute("SELECT content_id, verdict_id FROM done"))
    assert sorted(marked) == paths
    assert set(marked.values()) == {d.verdict_id for d in decisions}


_KILL_AFTER = """
import os, signal, sys
from uploadscan import Scanner
from uploadscan.batch import backfill

seen = 0


def kill_after(item):
    global seen
    seen += 1
    if seen == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)


with Scanner.open(sys.argv[1], audit=False) as scanner:
    backfill(
        scanner, sys.argv[2], checkpoint=sys.argv[4], workers=0, batch_size=2, on_item=kill_after
    )
"""


def test_kill_between_audit_and_checkpoint_records_nothing_twice(tmp_path: Path) -> None:
    """SIGKILL at a known point: three decisions audited, the third file's record and
    checkpoint row not yet written (they are flushed after a task's results, at most once a
    second or per 256 files). The next run scans the unmarked files again and must find their
    decisions already there."""
    paths = link_media(tmp_path / "catalogue", [fixture(name) for name in IMAGES[:6]])
    home = tmp_path / "home"
    with Scanner.open(home) as scanner:
        add_lists(scanner, tmp_path, LISTED_PDQ, LISTED_MD5)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    checkpoint = tmp_path / "checkpoint.sqlite3"
    source = str(tmp_path / "catalogue")
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER, str(home), source, "3", str(checkpoint)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    marked = _done(checkpoint)
    assert marked in (0, 2)  # the first task's two files, if a flush came before the kill
    with Scanner.open(home, audit=False) as scanner:
        audited_before = {d.verdict_id for d in scanner.store.decisions()}
        assert len(audited_before) == 3  # the third was audited, never checkpointed
        result = backfill(scanner, source, checkpoint=checkpoint, workers=0)
        assert (result.skipped, result.scanned) == (marked, len(paths) - marked)
        decisions = scanner.store.decisions()
    assert len(decisions) == len({d.verdict_id for d in decisions}) == len(paths)
    assert audited_before <= {d.verdict_id for d in decisions}
    with PublishedRecord.open(home / "published.sqlite3") as record:
        assert record.count() == len(paths)
