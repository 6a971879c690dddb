"""vPDQ interop: the text format ThreatExchange's ``vpdq`` reads and writes.

vPDQ writes one line per hashed frame: ``frame_number,quality,pdq_hex,timestamp_seconds``
(for example ``0,100,34ada6b9...0034df54,0.000``). Lists published that way are read with
``read_vpdq``, and ours are written with ``write_vpdq`` so other tools can read them back. The
match rule for listed videos is ``uploadscan._video_rule``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .._errors import InvalidHashError
from ._result import FrameHash

MIN_QUALITY = 50
"""Frames below this PDQ quality are ignored by the match rule (the industry convention)."""

DEFAULT_MAX_SPAN = 2.0
"""Longest stretch of time (seconds) one listed frame can stand for."""

_HEX_DIGITS = frozenset("0123456789abcdef")


def _parse_line(line: str, number: int, where: str) -> FrameHash:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != 4:
        raise InvalidHashError(
            f"{where}line {number}: expected 'frame,quality,pdq_hex,timestamp', "
            f"got {len(fields)} fields"
        )
    frame, quality, pdq, timestamp = fields
    if not frame.isdigit():
        raise InvalidHashError(f"{where}line {number}: frame number {frame!r} is not an integer")
    if not quality.isdigit() or int(quality) > 100:
        raise InvalidHashError(f"{where}line {number}: quality {quality!r} is not in 0..100")
    pdq = pdq.lower()
    if len(pdq) != 64 or not set(pdq) <= _HEX_DIGITS:
        raise InvalidHashError(f"{where}line {number}: PDQ hash is not 64 hex characters")
    try:
        seconds = float(timestamp)
    except ValueError:
        raise InvalidHashError(
            f"{where}line {number}: timestamp {timestamp!r} is not a number"
        ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidHashError(f"{where}line {number}: timestamp {timestamp!r} is out of range")
    return FrameHash(timestamp=seconds, pdq=pdq, quality=int(quality))


def read_vpdq(source: str | os.PathLike[str]) -> list[FrameHash]:
    """Frames of a vPDQ hash file, given as its text or (a ``Path``/path-like) its location.

    A ``str`` containing a newline or a comma is taken as the text itself; any other ``str`` is
    a path. Blank lines are skipped; any other malformed line raises ``InvalidHashError`` naming
    its line number. Frames are returned sorted by timestamp (vPDQ writes them in order).
    """
    where = ""
    if isinstance(source, str) and ("\n" in source or "," in source):
        text = source
    else:
        path = Path(source)
        where = f"{path}: "
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidHashError(f"{where}cannot read vPDQ file ({exc})") from exc
    frames = [
        _parse_line(line, number, where)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    frames.sort(key=lambda f: f.timestamp)
    return frames


def write_vpdq(frames: Iterable[FrameHash]) -> str:
    """vPDQ text for ``frames``: one ``index,quality,pdq_hex,timestamp`` line each.

    vPDQ's first column is the decoded frame number; we hash a selection of frames, so it is the
    position in this list, which is all vPDQ readers use it for (ordering).
    """
    lines = [
        f"{index},{frame.quality},{frame.pdq},{frame.timestamp:.3f}"
        for index, frame in enumerate(frames)
    ]
    return "".join(line + "\n" for line in lines)


def pdq_codes(frames: Sequence[FrameHash]) -> npt.NDArray[np.uint8]:
    """(n, 32) uint8 array of the frames' PDQ hashes, for Hamming search."""
    codes = np.zeros((len(frames), 32), dtype=np.uint8)
    for row, frame in enumerate(frames):
        try:
            codes[row] = np.frombuffer(bytes.fromhex(frame.pdq), dtype=np.uint8)
        except ValueError:
            raise InvalidHashError(f"frame {row}: {frame.pdq!r} is not a 64-hex PDQ hash") from None
    return codes
