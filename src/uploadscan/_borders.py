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
    """How many leading rows of ``lines`` (n, m) form a uniform border."""
    if lines.shape[0] == 0:
        return 0
    means = lines.mean(axis=1)
    stds = lines.std(axis=1)
    level = float(means[0])
    flat = bool(stds[0] <= _FLAT_STD)
    if not (level <= _DARK or flat):
        return 0
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
