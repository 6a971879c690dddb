"""The independent references the tests compare against.

PDQ: ``pdqhash`` (Meta's C++ PDQ) on Pillow's full-resolution decode converted to RGB, with no
EXIF transpose — how list publishers' tools hash, and the specification's test of a correct
implementation. Videos: ``pdqhash`` on every frame PyAV decodes, as vPDQ does. Never
uploadscan's own output.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pdqhash
from PIL import Image

from uploadscan import FrameHash


def reference_pdq(source: Path | str | bytes | Image.Image) -> tuple[str, int]:
    """(64 hex characters, quality) of ``pdqhash`` on the full decode of ``source``."""
    if isinstance(source, Image.Image):
        return _pdq_of(source)
    opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    with opened as image:
        return _pdq_of(image)


def _pdq_of(image: Image.Image) -> tuple[str, int]:
    bits, quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex strings of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def reference_frames(source: Path | str | bytes) -> list[FrameHash]:
    """PDQ of every decoded frame, ``pdqhash`` on PyAV's RGB decode, as vPDQ hashes a video.

    The golden values for edited copies the tests make themselves (re-encoded, cut, padded):
    the committed ``*.vpdq.txt`` fixtures are Meta's ``vpdq`` itself, on the original videos,
    and ``tests/test_fixtures.py`` checks that this reproduces them.
    """
    opened = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    frames = []
    with opened as container:
        for frame in container.decode(video=0):
            bits, quality = pdqhash.compute(np.ascontiguousarray(frame.to_ndarray(format="rgb24")))
            pdq = np.packbits(bits.astype(np.uint8)).tobytes().hex()
            frames.append(FrameHash(float(frame.time or 0.0), pdq, int(quality)))
    return frames
