"""Sample images for the demo and the quick start, drawn from code rather than shipped as files.

The demo must run offline on a fresh install with nothing to download and no third-party media
whose licence travels with the package, so the samples are generated: seeded, smooth colour
fields with shapes, textured enough to give high-quality PDQ hashes and distinct from each other.
The same seed gives the same pixels on every machine.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

SAMPLE_NAMES = ("harbour", "orchard", "quarry", "glacier", "market", "canyon")


def sample_image(name: str, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A deterministic RGB image; ``name`` picks the seed."""
    if name not in SAMPLE_NAMES:
        raise ValueError(f"unknown sample {name!r}; choose from {', '.join(SAMPLE_NAMES)}")
    seed = SAMPLE_NAMES.index(name) * 7919 + 17
    rng = np.random.default_rng(seed)
    width, height = size
    # Low-frequency colour field: coarse noise upsampled smoothly.
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    field = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    image = field.copy()
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = (
            int(rng.integers(width // 12, width // 3)),
            int(rng.integers(height // 12, height // 3)),
        )
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
    # Fine texture so the image is not flat at PDQ's 64x64 working size.
    texture = rng.normal(0, 10, size=(height, width, 1))
    pixels = np.asarray(image, dtype=np.float32) + texture
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def sample_jpeg(name: str, size: tuple[int, int] = (800, 600), quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    sample_image(name, size).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
