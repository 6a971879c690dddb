"""When does an upload contain a listed video? The time-coverage rule.

 vPDQ's own rule counts frames: the share of the listed video's frames that match
some upload frame, and the share of the upload's frames that match some listed frame. That makes
the verdict depend on how densely each side was sampled: a list hashed at every frame (30 per
second) is mostly "missed" by an upload hashed once a second, even when they are the same video,
and a short listed clip inside a long upload fails the upload-side share. So we weigh time, not
frames:

- frames with quality below ``MIN_QUALITY`` are ignored on both sides (they are near-blank and
  match everything);
- every frame, on either side, stands for the moment around it: from the midpoint with the
  previous timestamp to the midpoint with the next, each side capped at ``max_span / 2`` so a
  frame next to a long gap (dropped dark frames, a sparse list) cannot claim time it does not
  show;
- a listed frame is matched when any upload frame is within the threshold, wherever it is in
  the upload (the listed clip may sit anywhere inside a longer upload). It is credited with its
  own span widened to its partner's: an upload sampled once a second matching the listed frame
  at 3.0 s vouches for 2.5-3.5 s of the listed video, even though the list holds 30 frames there;
- ``listed_coverage`` is the credited share of the listed video's time; the video matches when
  it reaches ``coverage`` (default 0.8) and the upload's share of time matched the same way
  reaches ``upload_fraction`` (default 0, i.e. off).

Both plain frame-count shares are reported too, so the two rules can be compared.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ._errors import ConfigError
from .hashing._result import FrameHash
from .hashing._vpdq import DEFAULT_MAX_SPAN, MIN_QUALITY, pdq_codes
from .index._hamming import brute_force_search

DEFAULT_THRESHOLD = 31
DEFAULT_COVERAGE = 0.8
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class VideoMatchResult:
    """How much of a listed video an upload matched.

    ``listed_coverage``: share of the listed video's time (quality >= 50 frames, each standing
    for its span) whose frames matched. ``upload_fraction``: the same for the upload's time.
    ``vpdq_listed_fraction`` / ``vpdq_upload_fraction``: vPDQ's plain frame-count shares, for
    comparison. ``matched_timestamps``: timestamps (in the listed video) of the matched frames.
    """

    listed_coverage: float
    upload_fraction: float
    vpdq_listed_fraction: float
    vpdq_upload_fraction: float
    matched_timestamps: tuple[float, ...]
    is_match: bool


def frame_halves(
    timestamps: Sequence[float], max_span: float = DEFAULT_MAX_SPAN
) -> list[tuple[float, float]]:
    """(before, after): seconds each frame stands for on either side of its timestamp.

    Midpoint to midpoint with the neighbouring timestamps, each side capped at
    ``max_span / 2``; edge frames mirror their inner half-gap; a lone moment stands for
    ``max_span``. Frames sharing a timestamp (a frame hashed twice, with and without its
    letterbox) share its span. ``timestamps`` must be sorted.
    """
    moments = sorted(set(timestamps))
    half = max_span / 2.0
    if len(moments) == 1:
        return [(half, half)] * len(timestamps)
    gaps = [min(half, (b - a) / 2.0) for a, b in itertools.pairwise(moments)]
    last = len(moments) - 1
    by_moment = {
        t: (gaps[k - 1] if k > 0 else gaps[0], gaps[k] if k < last else gaps[-1])
        for k, t in enumerate(moments)
    }
    return [by_moment[t] for t in timestamps]


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(intervals):
        if hi <= lo:
            continue
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _intersection_length(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0.0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _covered_share(
    frames: Sequence[FrameHash],
    partners: dict[int, list[int]],
    other: Sequence[FrameHash],
    max_span: float,
) -> tuple[float, float, list[int]]:
    """(time share, frame-count share, matched indices) of ``frames`` (quality >= 50 only).

    A frame matched by a frame of the other video is credited with the moment around it: its
    own span, widened to the partner's span (the partner was sampled that sparsely, so it
    stands for that much of its own video).
    """
    kept = [i for i, f in enumerate(frames) if f.quality >= MIN_QUALITY]
    if not kept:
        return 0.0, 0.0, []
    halves = dict(
        zip(kept, frame_halves([frames[i].timestamp for i in kept], max_span), strict=True)
    )
    other_kept = [j for j, f in enumerate(other) if f.quality >= MIN_QUALITY]
    other_halves = (
        dict(
            zip(
                other_kept,
                frame_halves([other[j].timestamp for j in other_kept], max_span),
                strict=True,
            )
        )
        if other_kept
        else {}
    )
    extent = _union(
        (frames[i].timestamp - b, frames[i].timestamp + a) for i, (b, a) in halves.items()
    )
    hit = [i for i in kept if any(j in other_halves for j in partners.get(i, ()))]
    credits = []
    for i in hit:
        before, after = halves[i]
        for j in partners[i]:
            if j in other_halves:
                before = max(before, other_halves[j][0])
                after = max(after, other_halves[j][1])
        t = frames[i].timestamp
        credits.append((t - before, t + after))
    total = sum(hi - lo for lo, hi in extent)
    if total <= 0:  # every frame at one instant: count frames
        return len(hit) / len(kept), len(hit) / len(kept), hit
    share = _intersection_length(_union(credits), extent) / total
    return share, len(hit) / len(kept), hit


def video_match(
    listed: Sequence[FrameHash],
    upload: Sequence[FrameHash],
    pairs: Iterable[tuple[int, int]],
    *,
    coverage: float = DEFAULT_COVERAGE,
    upload_fraction: float = 0.0,
    max_span: float = DEFAULT_MAX_SPAN,
) -> VideoMatchResult:
    """Apply the time-coverage rule to the matching frame pairs of a listed video and an upload.

    ``listed`` and ``upload`` are sorted by timestamp; ``pairs`` holds (listed index, upload
    index) for every pair within the threshold (one search of the upload's frames against the
    list gives them). Low-quality frames are ignored even if paired.
    """
    for name, value in (("coverage", coverage), ("upload_fraction", upload_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {value!r}")
    if not max_span > 0:
        raise ConfigError(f"max_span must be positive, got {max_span!r}")
    by_listed: dict[int, list[int]] = {}
    by_upload: dict[int, list[int]] = {}
    for i, j in pairs:
        by_listed.setdefault(int(i), []).append(int(j))
        by_upload.setdefault(int(j), []).append(int(i))
    listed_cov, listed_count, hits = _covered_share(listed, by_listed, upload, max_span)
    upload_cov, upload_count, _ = _covered_share(upload, by_upload, listed, max_span)
    is_match = (
        bool(hits)
        and listed_cov + _EPSILON >= coverage
        and upload_cov + _EPSILON >= upload_fraction
    )
    return VideoMatchResult(
        listed_coverage=listed_cov,
        upload_fraction=upload_cov,
        vpdq_listed_fraction=listed_count,
        vpdq_upload_fraction=upload_count,
        matched_timestamps=tuple(listed[i].timestamp for i in hits),
        is_match=is_match,
    )


def matching_pairs(
    listed: Sequence[FrameHash],
    upload: Sequence[FrameHash],
    threshold: int = DEFAULT_THRESHOLD,
) -> list[tuple[int, int]]:
    """(listed index, upload index) of every pair within ``threshold`` bits.

    Quality < ``MIN_QUALITY`` frames never match. Brute force: for tests, tools and small lists.
    """
    listed_ok = np.array([i for i, f in enumerate(listed) if f.quality >= MIN_QUALITY], np.int64)
    upload_ok = [j for j, f in enumerate(upload) if f.quality >= MIN_QUALITY]
    if listed_ok.size == 0 or not upload_ok:
        return []
    codes = pdq_codes([listed[i] for i in listed_ok])
    queries = pdq_codes([upload[j] for j in upload_ok])
    hits = brute_force_search(codes, listed_ok, queries, threshold)
    return [(int(i), upload_ok[int(q)]) for i, q in zip(hits.ids, hits.query, strict=True)]


def compare_videos(
    listed: Sequence[FrameHash],
    upload: Sequence[FrameHash],
    threshold: int = DEFAULT_THRESHOLD,
    coverage: float = DEFAULT_COVERAGE,
    upload_fraction: float = 0.0,
    *,
    max_span: float = DEFAULT_MAX_SPAN,
) -> VideoMatchResult:
    """Does ``upload`` contain the listed video? Brute-force matching plus ``video_match``."""
    listed_sorted = sorted(listed, key=lambda f: f.timestamp)
    upload_sorted = sorted(upload, key=lambda f: f.timestamp)
    pairs = matching_pairs(listed_sorted, upload_sorted, threshold)
    return video_match(
        listed_sorted,
        upload_sorted,
        pairs,
        coverage=coverage,
        upload_fraction=upload_fraction,
        max_span=max_span,
    )
