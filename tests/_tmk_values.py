"""Real TMK+PDQF values for the list-source tests: our hasher's ``.tmk`` files of the bundled
fixture videos (``tests/fixtures``), made once per test process.

The source tests check that a value travels unchanged through a list file, ThreatExchange, a
feed or an export, and that what arrives matches the video it came from; they need a value of
a real video, not a particular one, so the hasher's own output is the right input here (its
agreement with the reference is tested in ``test_tmk_reference.py``).
"""

from __future__ import annotations

from functools import cache

from _media import CLIP_A, CLIP_B, fixture

import uploadscan

__all__ = ["CLIP_A", "CLIP_B", "fixture_tmk"]


@cache
def fixture_tmk(video: str = CLIP_A) -> bytes:
    """The ``.tmk`` file of a bundled fixture video, as ``uploadscan hash --tmk`` writes it."""
    tmk = uploadscan.hash_file(fixture(video)).tmk
    assert tmk is not None, f"{video}: no TMK value"
    return tmk
