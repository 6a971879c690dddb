"""The every-frame decode pass, without any particular hash: what a sink that takes every
frame is handed, and that the sampled sinks get the planned decode's frames all the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _made_videos import encode, shots

from uploadscan.hashing._pdq import PdqFrameSink
from uploadscan.media._frames import Frame, FrameSink, FrameTiming
from uploadscan.media._limits import DEFAULT_LIMITS
from uploadscan.media._video import decode_video


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s at 30 fps, x264 defaults: B-frames, so half the frames are non-reference ones."""
    return encode(tmp_path_factory.mktemp("pass") / "video.mp4", shots(1, seconds=6))


class _Recorder:
    """A sink that records what the pass hands it."""

    def __init__(self, undecoded: bool) -> None:
        self.undecoded = undecoded
        self.times: list[tuple[float, bool]] = []

    @property
    def every_frame(self) -> bool:
        return True

    @property
    def accepts_undecoded(self) -> bool:
        return self.undecoded

    def add(self, timestamp: float, frame: Frame) -> None:
        assert frame.timing is not None and frame.keep() is not None
        assert frame.rgb(64, 64).shape == (64, 64, 3) and frame.gray(32, 32).shape == (32, 32)
        self.times.append((frame.timing.time, True))

    def add_undecoded(self, timestamp: float, timing: FrameTiming) -> None:
        self.times.append((timing.time, False))

    def fork(self) -> FrameSink:
        return _Recorder(self.undecoded)

    def merge(self, later: FrameSink) -> None:
        raise AssertionError("an every-frame pass never merges")


@pytest.mark.parametrize("undecoded", [False, True])
def test_every_frame_arrives_once_in_order(video: Path, undecoded: bool) -> None:
    sink = _Recorder(undecoded)
    info = decode_video(video.read_bytes(), "video/mp4", DEFAULT_LIMITS, [sink])
    times = [t for t, _ in sink.times]
    assert len(times) == 180 and times == sorted(times)
    np.testing.assert_allclose(np.diff(times), 1 / 30, atol=1e-6)
    skipped = sum(not decoded for _, decoded in sink.times)
    assert info.frames_decoded == 180 - skipped
    # x264's B-frames are what nothing refers to: the pass skips them only when allowed.
    assert (skipped > 40) if undecoded else (skipped == 0)


def test_sampled_sinks_get_the_planned_frames_at_the_same_times(video: Path) -> None:
    """PDQ frames from the every-frame pass (non-reference frames skipped, as the planned
    decode skips them) are the planned decode's own, hash for hash and time for time."""
    data = video.read_bytes()
    planned = PdqFrameSink(dihedral=True)
    decode_video(data, "video/mp4", DEFAULT_LIMITS, [planned])
    passed = PdqFrameSink(dihedral=True)
    decode_video(data, "video/mp4", DEFAULT_LIMITS, [passed, _Recorder(undecoded=True)])
    assert planned.finish() == passed.finish()
    assert len(planned.frames) >= 6  # keyframes and about one a second
