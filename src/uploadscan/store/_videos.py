"""How a listed video is stored: its frame hashes as entries that name the video.

A list holds a video (vPDQ) as the PDQ hashes of its frames. The store keys entries by hash
value, and a video repeats frame hashes (a still scene, a title card shown twice), so frames
are grouped by hash: each entry carries ``extra["video"]`` (the listed video's name), the first
``timestamp`` and every moment its hash occurs (``timestamps``), and the lowest quality seen.
The matcher groups entries by ``video`` and judges the whole timeline by the time-coverage
rule, whoever wrote the entries: a synced vPDQ file or the platform's own media.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..hashing._result import FrameHash
from ..hashing._vpdq import MIN_QUALITY
from ._lists import EntryUpsert

__all__ = ["VIDEO_KEY", "group_frames", "video_upserts"]

#: ``extra`` key naming the listed video an entry is a frame of.
VIDEO_KEY = "video"


def group_frames(
    video: str, frames: Iterable[tuple[int, FrameHash]]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(hash value, extra) per distinct frame hash of ``video``, from (frame number, frame)
    pairs in time order. Frames below PDQ's quality floor are left out: they never match."""
    grouped: dict[str, dict[str, Any]] = {}
    for number, frame in frames:
        if frame.quality < MIN_QUALITY:
            continue
        group = grouped.get(frame.pdq)
        if group is None:
            grouped[frame.pdq] = {
                VIDEO_KEY: video,
                "frame": number,
                "timestamp": frame.timestamp,
                "quality": frame.quality,
                "timestamps": [frame.timestamp],
            }
        else:
            group["timestamps"].append(frame.timestamp)
            group["quality"] = min(group["quality"], frame.quality)
    yield from grouped.items()


def video_upserts(
    video: str,
    frames: Iterable[FrameHash],
    *,
    hash_type: str = "pdq",
    labels: tuple[str, ...] = (),
) -> list[EntryUpsert]:
    """The entries that list ``video`` by its frames (external id ``video#frame``)."""
    return [
        EntryUpsert(hash_type, value, labels, f"{video}#{extra['frame']}", extra)
        for value, extra in group_frames(video, enumerate(frames))
    ]
