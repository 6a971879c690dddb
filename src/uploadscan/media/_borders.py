"""Finding uniform borders (letterbox, pillarbox, padding) around a picture.

Re-uploads of listed content often gain bars: a video re-encoded to another aspect ratio, a
photo padded to a square for a feed, a screenshot on a flat background. PDQ sees the bars as
content, so the hash moves far; hashing the picture inside them too lets such copies match.
Used for video frames and still images alike.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Luma = npt.NDArray[np.float32]

#: A border must be at least this share of the dimension (each side) to be trimmed.
_MIN_BORDER_SHARE = 0.02
#: ... and leave at least this share of the frame.
_MIN_CONTENT_SHARE = 0.4
_ROW_STD = 6.0  # a border row/column is near-constant ...
_ROW_DELTA = 8.0  # ... close to the outermost row's level ...
_DARK = 40.0  # ... and either dark (classic black bars)
_FLAT_STD = 2.0  # or perfectly flat (a padded colour)
_SAMPLE = 4  # border detection looks at every 4th pixel along each row/column


def _edge_run(lines: Luma) -> int:
    """How many leading rows of ``lines`` (n, m) form a uniform border.

    Most frames have no border, and their outermost row already says so: it is checked on
    its own first (the same per-row reduction, so the same numbers), which spares the mean
    and deviation of every row of a 720p frame (3 ms a side).
    """
    if lines.shape[0] == 0:
        return 0
    level = float(lines[:1].mean(axis=1)[0])
    flat = bool(lines[:1].std(axis=1)[0] <= _FLAT_STD)
    if not (level <= _DARK or flat):
        return 0
    means = lines.mean(axis=1)
    stds = lines.std(axis=1)
    ok = (stds <= _ROW_STD) & (np.abs(means - level) <= _ROW_DELTA)
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else int(lines.shape[0])


def content_box(luma: Luma) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the picture inside uniform bars, or None if no bars."""
    height, width = luma.shape
    rows = luma[:, ::_SAMPLE]
    cols = luma[::_SAMPLE, :].T
    top = _edge_run(rows)
    bottom = height - _edge_run(rows[::-1])
    left = _edge_run(cols)
    right = width - _edge_run(cols[::-1])
    if bottom - top < _MIN_CONTENT_SHARE * height or right - left < _MIN_CONTENT_SHARE * width:
        return None  # a mostly uniform frame (a fade, a title card): nothing to trim to
    vertical = max(top, height - bottom) >= _MIN_BORDER_SHARE * height
    horizontal = max(left, width - right) >= _MIN_BORDER_SHARE * width
    if not (vertical or horizontal):
        return None
    if not vertical:
        top, bottom = 0, height
    if not horizontal:
        left, right = 0, width
    return top, bottom, left, right


#: A pixel belongs to the background when its luma is this close to the border's median.
_BACKGROUND_TOLERANCE = 12.0
#: ... and the outermost pixels must mostly be that level.
_FLAT_FRAME_SHARE = 0.6
#: A row is part of the picture when it holds a dense run this long (share of the width).
_PICTURE_RUN_SHARE = 0.3


def _longest_runs(dense: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Length of the longest run of True in each row."""
    padded = np.zeros((dense.shape[0], dense.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = dense
    steps = np.diff(padded, axis=1)
    starts = np.argwhere(steps == 1)
    ends = np.argwhere(steps == -1)
    longest = np.zeros(dense.shape[0], dtype=np.int64)
    np.maximum.at(longest, starts[:, 0], ends[:, 1] - starts[:, 1])
    return longest


def _longest_block(flags: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """(start, stop) of the longest run of True in a 1-D array; (0, 0) if none."""
    runs = _longest_runs(flags[None, :])
    if runs[0] == 0:
        return 0, 0
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    steps = np.diff(padded)
    starts = np.flatnonzero(steps == 1)
    stops = np.flatnonzero(steps == -1)
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def picture_box(luma: Luma) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a picture on a flat background that also carries sparse
    marks — a screenshot of a post: title bar, captions, buttons — or None.

    ``content_box`` needs uniform bars; here the background only has to be mostly one level.
    Pixels away from that level are "ink"; a picture row holds a long dense run of ink, a row
    of interface text only short ones (words), so the picture is the tallest block of rows
    with a long run, narrowed to the columns that are ink through that block.
    """
    height, width = luma.shape
    if height < 16 or width < 16:
        return None
    frame = np.concatenate([luma[0], luma[-1], luma[:, 0], luma[:, -1]])
    background = float(np.median(frame))
    if np.mean(np.abs(frame - background) <= _BACKGROUND_TOLERANCE) < _FLAT_FRAME_SHARE:
        return None  # the edges are not a background: a photo, not a picture on a canvas
    ink = np.abs(luma - background) > _BACKGROUND_TOLERANCE
    picture_rows = _longest_runs(ink) >= _PICTURE_RUN_SHARE * width
    top, bottom = _longest_block(picture_rows)
    if bottom - top < _MIN_CONTENT_SHARE * height * 0.5:
        return None
    left, right = _longest_block(ink[top:bottom].mean(axis=0) >= 0.5)
    if right - left < _PICTURE_RUN_SHARE * width:
        return None
    trimmed = (
        max(top, height - bottom) >= _MIN_BORDER_SHARE * height
        or max(left, width - right) >= _MIN_BORDER_SHARE * width
    )
    return (top, bottom, left, right) if trimmed else None
