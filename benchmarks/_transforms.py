"""The image transforms of the detection benchmark: what happens to a picture between the copy a
hash list was made from and the copy someone uploads.

Each ``Transform`` is one edit at one strength, a pure function of a Pillow RGB image (noise is
seeded, so every run sees the same pixels), plus the file format the result is saved in. Edits
are saved losslessly (as BMP, the cheapest lossless file to write) unless the transform is
itself about encoding, so each row measures one edit and not an unrelated JPEG round trip; the
chains add the realistic re-encoding.

``group`` says how the result is judged: "standard" transforms are the ones a perceptual hash is
expected to survive (the recall target applies to them); "crop" and "rotate-small" are reported
separately because global DCT hashes such as PDQ are known to move under them; "strong" is the
far end of a standard family (heavy blur, heavy noise, large overlays), shown for context.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

Edit = Callable[[Image.Image, int], Image.Image]  # (image, seed) -> image

GROUPS = ("standard", "crop", "rotate-small", "strong")


@dataclass(frozen=True, slots=True)
class Transform:
    name: str
    family: str
    group: str
    edit: Edit
    #: "BMP", "PNG", "JPEG:<quality>", "WEBP:<quality>", "WEBP:lossless" or "GIF"
    fmt: str = "BMP"
    #: the one strength per family that ``--quick`` runs
    quick: bool = False

    def apply(self, image: Image.Image, seed: int) -> bytes:
        """The transformed image, encoded as the file an uploader would send."""
        return encode(self.edit(image, seed ^ zlib.crc32(self.name.encode())), self.fmt)


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    kind, _, arg = fmt.partition(":")
    if kind == "BMP":
        image.save(out, "BMP")
    elif kind == "PNG":
        image.save(out, "PNG", compress_level=1)
    elif kind == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=int(arg))
    elif kind == "WEBP":
        if arg == "lossless":
            image.save(out, "WEBP", lossless=True, quality=0, method=0)
        else:
            image.save(out, "WEBP", quality=int(arg), method=4)
    elif kind == "GIF":
        image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(out, "GIF")
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return out.getvalue()


# --- single edits -------------------------------------------------------------------------------


def identity(image: Image.Image, seed: int) -> Image.Image:
    return image


def resize(factor: float) -> Edit:
    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        size = (max(8, round(w * factor)), max(8, round(h * factor)))
        return image.resize(size, Image.Resampling.BICUBIC)

    return edit


def crop_edge(fraction: float) -> Edit:
    """Cut ``fraction`` of the width off the left edge (a trimmed-off side, e.g. a cut logo)."""

    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        return image.crop((round(w * fraction), 0, w, h))

    return edit


def crop_centre(fraction: float) -> Edit:
    """Keep the centre, losing ``fraction`` of each dimension (half on each side)."""

    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        dx, dy = round(w * fraction / 2), round(h * fraction / 2)
        return image.crop((dx, dy, w - dx, h - dy))

    return edit


def transpose(method: Image.Transpose) -> Edit:
    return lambda image, seed: image.transpose(method)


def rotate(degrees: float) -> Edit:
    """Rotate about the centre on the same canvas, black corners (a tilted photo or scan)."""
    return lambda image, seed: image.rotate(
        degrees, resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0)
    )


def greyscale(image: Image.Image, seed: int) -> Image.Image:
    return image.convert("L").convert("RGB")


def enhance(kind: type[ImageEnhance._Enhance], factor: float) -> Edit:
    return lambda image, seed: kind(image).enhance(factor)


def gamma(value: float) -> Edit:
    table = [round(255 * (i / 255) ** value) for i in range(256)] * 3
    return lambda image, seed: image.point(table)


def blur(radius: float) -> Edit:
    return lambda image, seed: image.filter(ImageFilter.GaussianBlur(radius))


def unsharp(image: Image.Image, seed: int) -> Image.Image:
    return image.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=3))


def noise(sigma: float) -> Edit:
    def edit(image: Image.Image, seed: int) -> Image.Image:
        pixels = np.asarray(image, dtype=np.float32)
        rng = np.random.default_rng(seed)
        noisy = pixels + rng.normal(0.0, sigma, pixels.shape).astype(np.float32)
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

    return edit


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def caption(image: Image.Image, seed: int) -> Image.Image:
    """One line of white text with a dark outline near the bottom, 6% of the height."""
    out = image.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    size = max(8, h // 16)
    draw.text(
        (w // 20, h - 2 * size),
        "shared via example.social",
        font=_font(size),
        fill=(255, 255, 255),
        stroke_width=max(1, size // 12),
        stroke_fill=(0, 0, 0),
    )
    return out


def _overlay(
    image: Image.Image, draw_on: Callable[[ImageDraw.ImageDraw, int, int], None]
) -> Image.Image:
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw_on(ImageDraw.Draw(layer), *image.size)
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def corner_watermark(image: Image.Image, seed: int) -> Image.Image:
    """A semi-transparent logo box in the bottom-right corner, a quarter of the width."""

    def draw(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
        box = (w - w // 4 - w // 40, h - h // 9 - h // 40, w - w // 40, h - h // 40)
        d.rectangle(box, fill=(255, 255, 255, 140))
        d.text((box[0] + 4, box[1] + 2), "@channel", font=_font(h // 14), fill=(20, 20, 20, 230))

    return _overlay(image, draw)


def centre_watermark(image: Image.Image, seed: int) -> Image.Image:
    """Large semi-transparent text across the middle (a stock-photo style watermark)."""

    def draw(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
        size = max(8, w // 9)
        d.text(
            (w // 2, h // 2), "WATERMARK", font=_font(size), fill=(255, 255, 255, 110), anchor="mm"
        )

    return _overlay(image, draw)


def meme_text(image: Image.Image, seed: int) -> Image.Image:
    """Bold outlined text at the top and the bottom, each line most of the width."""
    out = image.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    size = max(8, h // 9)
    style = {"fill": (255, 255, 255), "stroke_width": max(1, size // 10), "stroke_fill": (0, 0, 0)}
    draw.text((w // 2, size), "WHEN THE UPLOAD", font=_font(size), anchor="mm", **style)
    draw.text((w // 2, h - size), "GETS THROUGH", font=_font(size), anchor="mm", **style)
    return out


def _place(
    image: Image.Image, size: tuple[int, int], at: tuple[int, int], colour: tuple[int, int, int]
) -> Image.Image:
    canvas = Image.new("RGB", size, colour)
    canvas.paste(image, at)
    return canvas


def border(fraction: float, colour: tuple[int, int, int]) -> Edit:
    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        b = max(1, round(min(w, h) * fraction))
        return _place(image, (w + 2 * b, h + 2 * b), (b, b), colour)

    return edit


def bars(vertical: float, horizontal: float) -> Edit:
    """Black bars: ``vertical`` of the height added above and below in total (letterbox),
    ``horizontal`` of the width added left and right (pillarbox)."""

    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        bx, by = round(w * horizontal / 2), round(h * vertical / 2)
        return _place(image, (w + 2 * bx, h + 2 * by), (bx, by), (0, 0, 0))

    return edit


def letterbox_169(image: Image.Image, seed: int) -> Image.Image:
    """Fit into a 16:9 frame (wide images) or a 9:16 frame (tall ones), black bars."""
    w, h = image.size
    if w >= h:
        cw, ch = max(w, round(h * 16 / 9)), max(h, round(w * 9 / 16))
    else:
        cw, ch = max(w, round(h * 9 / 16)), max(h, round(w * 16 / 9))
    return _place(image, (cw, ch), ((cw - w) // 2, (ch - h) // 2), (0, 0, 0))


def pad_asymmetric(fraction: float) -> Edit:
    """White padding on the left and top only (an image pasted into a document)."""

    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        px, py = round(w * fraction), round(h * fraction)
        return _place(image, (w + px, h + py), (px, py), (255, 255, 255))

    return edit


def canvas(share: float) -> Edit:
    """Screenshot style: the image, scaled to ``share`` of the canvas width, inside an app
    window with a title bar, a grey background and lines of interface text."""

    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        cw = w
        iw = round(cw * share)
        ih = max(1, round(h * iw / w))
        ch = ih + round(cw * 0.12) + round(cw * 0.18)
        out = Image.new("RGB", (cw, ch), (236, 236, 240))
        draw = ImageDraw.Draw(out)
        bar = round(cw * 0.06)
        draw.rectangle((0, 0, cw, bar), fill=(40, 44, 52))
        draw.text((bar, bar // 4), "Photos - Viewer", font=_font(bar // 2), fill=(220, 220, 220))
        top = round(cw * 0.12)
        out.paste(image.resize((iw, ih), Image.Resampling.BICUBIC), (round(cw * 0.06), top))
        line = max(8, cw // 40)
        for k in range(3):
            y = top + ih + line + k * 2 * line
            draw.text((round(cw * 0.06), y), "1,204 likes  reply  share", font=_font(line), fill=0)
        return out

    return edit


def chain(*edits: Edit) -> Edit:
    def edit(image: Image.Image, seed: int) -> Image.Image:
        for step in edits:
            image = step(image, seed)
        return image

    return edit


# --- the benchmark's list -----------------------------------------------------------------------

_T = Transform
_FLIP_H = transpose(Image.Transpose.FLIP_LEFT_RIGHT)
_B, _C, _S, _SAT = (
    ImageEnhance.Brightness,
    ImageEnhance.Contrast,
    ImageEnhance.Sharpness,
    ImageEnhance.Color,
)

_STD = "standard"
_ROT90 = transpose(Image.Transpose.ROTATE_90)


def _steps(
    label: str, family: str, make: Callable[[float], Edit], values: Sequence[float], quick: float
) -> list[Transform]:
    """One family at several strengths; ``label`` is formatted with the strength."""
    return [_T(label.format(v), family, _STD, make(v), quick=v == quick) for v in values]


TRANSFORMS: tuple[Transform, ...] = (
    _T("identity (PNG)", "identity", _STD, identity, "PNG", quick=True),
    *(_T(f"jpeg q{q}", "jpeg", _STD, identity, f"JPEG:{q}", q == 50) for q in (20, 30, 50, 70, 95)),
    *_steps("resize {}x", "resize", resize, (0.25, 0.5, 0.75, 1.5, 2.0), 0.5),
    _T("webp q80", "format", _STD, identity, "WEBP:80", quick=True),
    _T("webp lossless", "format", _STD, identity, "WEBP:lossless"),
    _T("gif (256 colours)", "format", _STD, identity, "GIF"),
    _T("mirror h", "mirror", _STD, _FLIP_H, quick=True),
    _T("mirror v", "mirror", _STD, transpose(Image.Transpose.FLIP_TOP_BOTTOM), quick=True),
    _T("rotate 90", "rotate-90s", _STD, _ROT90, quick=True),
    _T("rotate 180", "rotate-90s", _STD, transpose(Image.Transpose.ROTATE_180), quick=True),
    _T("rotate 270", "rotate-90s", _STD, transpose(Image.Transpose.ROTATE_270), quick=True),
    _T("greyscale", "colour", _STD, greyscale, quick=True),
    _T("saturation 0.5", "colour", _STD, enhance(_SAT, 0.5)),
    _T("saturation 1.5", "colour", _STD, enhance(_SAT, 1.5)),
    *_steps("brightness {}", "tone", lambda f: enhance(_B, f), (0.6, 0.8, 1.25, 1.5), 1.25),
    *_steps("contrast {}", "tone", lambda f: enhance(_C, f), (0.6, 0.8, 1.25, 1.6), 0.8),
    *_steps("gamma {}", "tone", gamma, (0.6, 0.8, 1.25, 1.6), 1.6),
    _T("blur r1", "blur/sharpen/noise", _STD, blur(1)),
    _T("blur r2", "blur/sharpen/noise", _STD, blur(2), quick=True),
    _T("sharpen 2x", "blur/sharpen/noise", _STD, enhance(_S, 2.0)),
    _T("unsharp mask", "blur/sharpen/noise", _STD, unsharp),
    _T("noise s5", "blur/sharpen/noise", _STD, noise(5)),
    _T("noise s10", "blur/sharpen/noise", _STD, noise(10), quick=True),
    _T("caption text", "overlay", _STD, caption, quick=True),
    _T("corner watermark", "overlay", _STD, corner_watermark),
    _T("border 5% black", "border/letterbox/pad", _STD, border(0.05, (0, 0, 0))),
    _T("border 10% white", "border/letterbox/pad", _STD, border(0.10, (255, 255, 255))),
    _T("letterbox 16:9", "border/letterbox/pad", _STD, letterbox_169, quick=True),
    _T("letterbox +30%", "border/letterbox/pad", _STD, bars(0.30, 0.0)),
    _T("pillarbox +30%", "border/letterbox/pad", _STD, bars(0.0, 0.30)),
    _T("pad left+top 10% white", "border/letterbox/pad", _STD, pad_asymmetric(0.10)),
    _T("pad left+top 25% white", "border/letterbox/pad", _STD, pad_asymmetric(0.25)),
    _T("screenshot canvas 80%", "canvas", _STD, canvas(0.80), quick=True),
    _T("screenshot canvas 60%", "canvas", _STD, canvas(0.60)),
    _T("resize 0.5x + jpeg q70", "chain", _STD, resize(0.5), "JPEG:70", quick=True),
    _T("mirror h + jpeg q70", "chain", _STD, _FLIP_H, "JPEG:70"),
    _T("grey + resize 0.75x + jpeg q80", "chain", _STD, chain(greyscale, resize(0.75)), "JPEG:80"),
    _T(
        "rotate 90 + brightness 1.25 + webp",
        "chain",
        _STD,
        chain(_ROT90, enhance(_B, 1.25)),
        "WEBP:80",
    ),
    _T(
        "letterbox 16:9 + resize 0.5x + jpeg q70",
        "chain",
        _STD,
        chain(letterbox_169, resize(0.5)),
        "JPEG:70",
    ),
    _T(
        "caption + contrast 1.25 + jpeg q50",
        "chain",
        _STD,
        chain(caption, enhance(_C, 1.25)),
        "JPEG:50",
    ),
    *(
        _T(f"crop edge {p}%", "crop edge", "crop", crop_edge(p / 100), quick=p == 5)
        for p in (2, 5, 10, 20)
    ),
    *(
        _T(f"crop centre {p}%", "crop centre", "crop", crop_centre(p / 100), quick=p == 10)
        for p in (2, 5, 10, 20)
    ),
    _T("crop edge 5% + jpeg q70", "crop edge", "crop", crop_edge(0.05), "JPEG:70"),
    *(
        _T(f"rotate {d} deg", "rotate small", "rotate-small", rotate(d), quick=d == 3)
        for d in (1, 2, 3, 5)
    ),
    _T("rotate 3 deg + resize 0.5x", "rotate small", "rotate-small", chain(rotate(3), resize(0.5))),
    _T("blur r4", "blur/sharpen/noise", "strong", blur(4)),
    _T("noise s25", "blur/sharpen/noise", "strong", noise(25)),
    _T("jpeg q10", "jpeg", "strong", identity, "JPEG:10"),
    _T("centre watermark", "overlay", "strong", centre_watermark),
    _T("meme text", "overlay", "strong", meme_text),
)


def select(quick: bool, names: Sequence[str] = ()) -> tuple[Transform, ...]:
    """The transforms to run: all, the quick subset, or the named ones."""
    if names:
        chosen = [t for t in TRANSFORMS if t.name in names]
    else:
        chosen = [t for t in TRANSFORMS if not quick or t.quick]
    if names and len(chosen) < len(set(names)):
        unknown = sorted(set(names) - {t.name for t in chosen})
        raise ValueError(f"unknown transforms: {unknown}")
    return tuple(chosen)
