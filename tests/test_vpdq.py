"""vPDQ text format and the time-coverage match rule, on vPDQ's own hash files.

The bundled ``*.vpdq.txt`` fixtures were written by Meta's ``vpdq`` from the fixture videos;
the extended corpus adds the sample hashes published in ThreatExchange's repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _media import CLIP_A, CLIP_B, vpdq_file

from uploadscan import ConfigError, FrameHash, InvalidHashError
from uploadscan._video_rule import compare_videos, frame_halves, video_match
from uploadscan.hashing._vpdq import read_vpdq, write_vpdq

SAMPLE = "threatexchange/vpdq/sample-hashes"


def _frames(timestamps: list[float], pdq: str = "f" * 64, quality: int = 100) -> list[FrameHash]:
    return [FrameHash(t, pdq, quality) for t in timestamps]


def test_read_a_file_written_by_vpdq() -> None:
    text = vpdq_file(CLIP_A).read_text()
    frames = read_vpdq(vpdq_file(CLIP_A))
    rows = [line.split(",") for line in text.splitlines()]
    assert len(frames) == len(rows) == 80
    for frame, (_, quality, pdq, timestamp) in zip(frames, rows, strict=True):
        assert frame == FrameHash(float(timestamp), pdq, int(quality))
    assert frames[-1].timestamp == pytest.approx(7.9)
    # vpdq numbers every frame, so what we write is what vpdq wrote, byte for byte
    assert write_vpdq(frames) == text


@pytest.mark.parametrize("video", [CLIP_A, CLIP_B])
def test_fixture_lists_match_themselves_and_not_each_other(video: str) -> None:
    listed = read_vpdq(vpdq_file(video))
    other = read_vpdq(vpdq_file(CLIP_B if video == CLIP_A else CLIP_A))
    assert compare_videos(listed, listed).listed_coverage == pytest.approx(1.0)
    assert compare_videos(listed, other).listed_coverage == 0.0
    assert not compare_videos(listed, other).is_match


def test_one_per_second_subsample_of_a_fixture_list_matches() -> None:
    """The 10 fps list against its own 1 fps sampling: counting finds 1/10, time finds all."""
    listed = read_vpdq(vpdq_file(CLIP_A))
    result = compare_videos(listed, listed[::10])
    assert result.vpdq_listed_fraction < 0.4
    assert result.listed_coverage >= 0.8
    assert result.is_match


@pytest.mark.extended
def test_read_reference_file(data_dir: Path) -> None:
    frames = read_vpdq(data_dir / SAMPLE / "chair-orig-22-sd-bar.txt")
    assert len(frames) == 673
    assert frames[0] == FrameHash(
        0.0, "34ada6b96d18d2491a79f80f07f2c9936fe6083dfb6983d8a4a36db40034df54", 100
    )
    assert frames[-1].timestamp == pytest.approx(22.4)


@pytest.mark.extended
def test_write_read_round_trip(data_dir: Path) -> None:
    frames = read_vpdq(data_dir / SAMPLE / "doorknob-hd-no-bar.txt")
    assert read_vpdq(write_vpdq(frames)) == frames


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0,100,abc,0.0", "line 2: PDQ hash is not 64 hex"),
        ("0,101," + "a" * 64 + ",0.0", "line 2: quality"),
        ("0,100," + "a" * 64, "line 2: expected"),
        ("x,100," + "a" * 64 + ",0.0", "line 2: frame number"),
        ("0,100," + "a" * 64 + ",nan", "line 2: timestamp"),
        ("0,100," + "g" * 64 + ",0.1", "line 2: PDQ hash"),
    ],
)
def test_invalid_lines_name_the_line(line: str, message: str) -> None:
    good = "0,100," + "b" * 64 + ",0.000"
    with pytest.raises(InvalidHashError, match=message):
        read_vpdq(good + "\n" + line + "\n")


def test_unreadable_path_is_typed(tmp_path: Path) -> None:
    with pytest.raises(InvalidHashError, match="cannot read"):
        read_vpdq(tmp_path / "missing.txt")


def test_frame_halves_are_capped_and_shared_per_moment() -> None:
    assert frame_halves([0.0, 1.0, 2.0]) == [(0.5, 0.5)] * 3
    # a 10 s hole: neither neighbour claims more than max_span / 2 of it
    assert frame_halves([0.0, 1.0, 11.0], max_span=2.0) == [(0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
    # two hashes of one frame (with and without bars) share its moment
    assert frame_halves([0.0, 1.0, 1.0, 2.0]) == [(0.5, 0.5)] * 4


def test_every_frame_list_matches_one_per_second_upload() -> None:
    """The same 10 s video, listed at 30 fps and uploaded at 1 fps: full time coverage, while
    plain frame counting finds only 1/30 of the list."""
    listed = [FrameHash(i / 30, f"{i // 30:064x}", 100) for i in range(300)]
    upload = [FrameHash(float(s), f"{s:064x}", 100) for s in range(10)]
    # each upload frame only equals the listed frame at its own second
    pairs = [(s * 30, s) for s in range(10)]
    result = video_match(listed, upload, pairs)
    # the upload's last sample (9 s) stands for 8.5-9.5 s: the listed video's last half second
    # is the only part left uncovered
    assert result.listed_coverage == pytest.approx(9.5 / 10, abs=0.01)
    assert result.vpdq_listed_fraction == pytest.approx(10 / 300)
    assert result.is_match


def test_short_listed_clip_inside_long_upload() -> None:
    listed = _frames([0.0, 1.0, 2.0])
    upload = _frames([float(t) for t in range(60)], pdq="0" * 64)
    pairs = [(0, 20), (1, 21), (2, 22)]
    result = video_match(listed, upload, pairs)
    assert result.is_match
    assert result.upload_fraction == pytest.approx(3 / 60)
    assert not video_match(listed, upload, pairs, upload_fraction=0.5).is_match


def test_partial_coverage_does_not_match() -> None:
    listed = _frames([float(t) for t in range(10)])
    upload = _frames([0.0, 1.0, 2.0])
    result = video_match(listed, upload, [(0, 0), (1, 1), (2, 2)])
    assert result.listed_coverage == pytest.approx(0.3)
    assert not result.is_match
    assert result.matched_timestamps == (0.0, 1.0, 2.0)


def test_low_quality_frames_are_ignored() -> None:
    listed = _frames([0.0, 1.0]) + _frames([2.0, 3.0], quality=10)
    upload = _frames([0.0, 1.0, 2.0, 3.0])
    result = video_match(listed, upload, [(i, i) for i in range(4)])
    assert result.listed_coverage == pytest.approx(1.0)
    assert result.vpdq_listed_fraction == pytest.approx(1.0)
    assert result.matched_timestamps == (0.0, 1.0)


def test_sparse_upload_frame_credits_at_most_max_span() -> None:
    """One matching still frame cannot cover a long listed video."""
    listed = _frames([t / 10 for t in range(200)])
    upload = _frames([5.0])
    result = video_match(listed, upload, [(50, 0)], max_span=2.0)
    assert result.listed_coverage == pytest.approx(2.0 / 20.0, abs=0.01)
    assert not result.is_match


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        video_match([], [], [], coverage=1.5)
    with pytest.raises(ConfigError):
        video_match([], [], [], max_span=0)


@pytest.mark.extended
def test_reference_lists_match_themselves_and_not_each_other(data_dir: Path) -> None:
    chair = read_vpdq(data_dir / SAMPLE / "chair-orig-22-sd-bar.txt")
    grey = read_vpdq(data_dir / SAMPLE / "chair-22-sd-grey-bar.txt")
    pattern = read_vpdq(data_dir / SAMPLE / "pattern-hd-no-bar.txt")
    assert compare_videos(chair, chair).listed_coverage == pytest.approx(1.0)
    assert compare_videos(chair, grey).is_match
    assert not compare_videos(chair, pattern).is_match
    assert compare_videos(chair, pattern).listed_coverage == 0.0


@pytest.mark.extended
def test_one_per_second_subsample_of_reference_matches(data_dir: Path) -> None:
    """vPDQ's own 1 fps sampling of the same video: plain counting finds ~1/30, time finds all."""
    chair = read_vpdq(data_dir / SAMPLE / "chair-orig-22-sd-bar.txt")
    every_second = chair[::30]
    result = compare_videos(chair, every_second)
    assert result.vpdq_listed_fraction < 0.4
    assert result.listed_coverage >= 0.8
    assert result.is_match
