"""The independent references the tests compare against.

PDQ: ``pdqhash`` (Meta's C++ PDQ) on Pillow's full-resolution decode converted to RGB, with no
EXIF transpose — how list publishers' tools hash, and the specification's test of a correct
implementation. Never uploadscan's own output.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image


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
