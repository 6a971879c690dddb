"""The image transforms of the detection benchmark: what happens to a picture between the copy a
hash list was made from and the copy someone uploads.

Each ``Transform`` is one edit at one strength, a pure function of a Pillow RGB image (noise is
seeded, so every run sees the same pixels), plus the file format the result is saved in. Edits
are saved losslessly (as BMP, the cheapest lossless file to write) unless the transform is
itself about encoding, so each row measures one edit and not an unrelated JPEG round trip; the
chains add the realistic re-encoding.

``group`` says how the result is judged: "standard" transforms are the ones a perceptual hash is
expected to survive (the recall target applies to them); "crop", "rotate-small", "screenshot" and
"caption/logo" are reported separately because global DCT hashes such as PDQ are known to move
under them; "strong" is the far end of a standard family (heavy blur, heavy noise, large
overlays), shown for context.

``goal`` marks the edits the crop-robust matching of own lists is judged on (crops of 4-20%,
symmetric and off two sides; rotations of 3-7 degrees, plain and with a 5% crop; screenshots
with the photo at 60% of the canvas; caption bands; corner logos): their recall target is 95%.

``OVERLAYS`` are the hard negatives: one overlay (the same logo, caption band or screenshot
chrome) put on *different* photos, once on listed photos and once on unlisted queries, so any
match between them is a false match caused by the overlay alone.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

Edit = Callable[[Image.Image, int], Image.Image]  # (image, seed) -> image

GROUPS = ("standard", "crop", "rotate-small", "screenshot", "caption/logo", "strong")
#: the goal families of crop-robust matching, in report order
GOALS = ("crop", "rotate", "screenshot", "caption", "logo")


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
    #: the crop-robust goal family this edit belongs to (one of ``GOALS``), if any
    goal: str | None = None

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


def crop_sides(fraction: float, sides: str) -> Edit:
    """Cut ``fraction`` of the width and of the height off the named sides ("lt": the left
    and the top), as when a corner of a picture is cropped away."""

    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        dx, dy = round(w * fraction), round(h * fraction)
        left, top = (dx if "l" in sides else 0), (dy if "t" in sides else 0)
        right, bottom = (w - dx if "r" in sides else w), (h - dy if "b" in sides else h)
        return image.crop((left, top, right, bottom))

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


def social_screenshot(share: float) -> Edit:
    """A web-page screenshot: tabs, an address bar, a menu of text on the left, the image at
    ``share`` of the page width, post text below and a column of text on the right. Heavier,
    text-rich chrome than ``canvas``, so it is also the harder shared-chrome negative."""

    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        cw = max(w, 320)
        iw = round(cw * share)
        ih = max(1, round(h * iw / w))
        u = max(2, cw // 100)
        top = 13 * u
        out = Image.new("RGB", (cw, top + ih + 16 * u), (250, 250, 252))
        d = ImageDraw.Draw(out)
        small = _font(2 * u)
        d.rectangle((0, 0, cw, 5 * u), fill=(222, 225, 230))
        for k, label in enumerate(("Home - example.social", "Inbox (3)", "News")):
            x = 2 * u + k * 22 * u
            d.rectangle((x, u, x + 20 * u, 5 * u), fill=(245, 245, 248))
            d.text((x + u, 2 * u), label, font=small, fill=(30, 30, 30))
        d.rectangle((10 * u, 6 * u, cw - 10 * u, 9 * u), fill=(255, 255, 255), outline=(200,) * 3)
        d.text((12 * u, 6 * u + u // 2), "https://example.social/p/4815162342", font=small, fill=0)
        menu = ("Home", "Explore", "Notifications", "Messages", "Bookmarks", "Profile", "More")
        for k, label in enumerate(menu):
            y = top + 4 * k * u
            d.ellipse((2 * u, y, 4 * u, y + 2 * u), fill=(40, 40, 40))
            d.text((5 * u, y), label, font=small, fill=(20, 20, 20))
        left = round(cw * 0.20)
        d.text((left, top - 3 * u), "Example Channel @example", font=small, fill=0)
        out.paste(image.resize((iw, ih), Image.Resampling.BICUBIC), (left, top))
        post = (
            "Look at this. Share before it is deleted!",
            "#news #breaking #example",
            "12:04 PM - 3 Mar - 1.2M views",
            "Reply     Repost     Like     Share",
        )
        for k, line in enumerate(post):
            d.text((left, top + ih + u + 3 * k * u), line, font=small, fill=(20, 20, 20))
        side = left + iw + 2 * u
        if side < cw - 8 * u:
            d.text((side, top), "What's happening", font=small, fill=0)
            for k in range(6):
                d.text(
                    (side, top + (k + 2) * 3 * u),
                    f"Trending #{k + 1}",
                    font=small,
                    fill=(90, 90, 90),
                )
        return out

    return edit


def logo(size: int) -> Image.Image:
    """An outlet's mark (RGBA): a dark disc with a ring, a star, initials and a name band."""
    s = max(24, size)
    mark = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(mark)
    ring = (240, 200, 40, 255)
    d.ellipse((0, 0, s - 1, round(s * 0.8)), fill=(10, 10, 10, 235), outline=ring, width=s // 24)
    cx, cy, r = s / 2, s * 0.4, s * 0.28
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    d.polygon(
        list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles), strict=True)), ring
    )
    d.text((cx, cy + r * 0.15), "AX", font=_font(s // 6), fill=(10, 10, 10, 255), anchor="mm")
    d.rectangle((0, round(s * 0.8), s - 1, s - 1), fill=(200, 20, 20, 255))
    d.text((cx, s * 0.9), "AL-EXAMPLE MEDIA", font=_font(s // 11), fill=(255,) * 4, anchor="mm")
    return mark


def stamp_logo(share: float, corner: str) -> Edit:
    """``logo`` at ``share`` of the image width in a corner ("tl", "br", ...): a channel's
    mark stamped on everything it reposts."""

    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        s = max(24, round(w * share))
        margin = round(w * 0.03)
        x = margin if "l" in corner else w - s - margin
        y = margin if "t" in corner else h - s - margin
        out = image.convert("RGBA")
        out.alpha_composite(logo(s), (max(0, x), max(0, y)))
        return out.convert("RGB")

    return edit


CAPTION = (
    "BREAKING: footage the channel says was filmed this morning",
    "shared by @example_channel - follow for more",
)


def caption_band(where: str, share: float = 0.16) -> Edit:
    """A two-line caption band of ``share`` of the height: added below the photo (white on
    black, the canvas grows), added above it (black on white, meme style), or drawn "over" the
    bottom of the photo (hiding what is beneath). The same text and style on every image."""

    def edit(image: Image.Image, seed: int) -> Image.Image:
        w, h = image.size
        band = max(20, round(h * share))
        light, dark = (255, 255, 255), (0, 0, 0)
        fg, bg = (dark, light) if where == "above" else (light, dark)
        if where == "over":
            out, y0 = image.copy(), h - band
        else:
            out = Image.new("RGB", (w, h + band), bg)
            out.paste(image, (0, band if where == "above" else 0))
            y0 = 0 if where == "above" else h
        d = ImageDraw.Draw(out)
        d.rectangle((0, y0, w, y0 + band), fill=bg)
        size = max(8, band // 4)
        d.text((w // 2, y0 + band // 3), CAPTION[0], font=_font(size), fill=fg, anchor="mm")
        d.text(
            (w // 2, y0 + 3 * band // 4),
            CAPTION[1],
            font=_font(size * 3 // 4),
            fill=fg,
            anchor="mm",
        )
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
    _T("caption text", "overlay", _STD, caption, quick=True, goal="caption"),
    _T("corner watermark", "overlay", _STD, corner_watermark, goal="logo"),
    _T("border 5% black", "border/letterbox/pad", _STD, border(0.05, (0, 0, 0))),
    _T("border 10% white", "border/letterbox/pad", _STD, border(0.10, (255, 255, 255))),
    _T("letterbox 16:9", "border/letterbox/pad", _STD, letterbox_169, quick=True),
    _T("letterbox +30%", "border/letterbox/pad", _STD, bars(0.30, 0.0)),
    _T("pillarbox +30%", "border/letterbox/pad", _STD, bars(0.0, 0.30)),
    _T("pad left+top 10% white", "border/letterbox/pad", _STD, pad_asymmetric(0.10)),
    _T("pad left+top 25% white", "border/letterbox/pad", _STD, pad_asymmetric(0.25)),
    _T("screenshot canvas 80%", "canvas", _STD, canvas(0.80), quick=True),
    _T("screenshot canvas 60%", "canvas", _STD, canvas(0.60), goal="screenshot"),
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
        _T(
            f"crop centre {p}%",
            "crop centre",
            "crop",
            crop_centre(p / 100),
            quick=p == 10,
            goal="crop" if p >= 4 else None,
        )
        for p in (2, 5, 10, 20)
    ),
    _T("crop edge 5% + jpeg q70", "crop edge", "crop", crop_edge(0.05), "JPEG:70"),
    _T("crop centre 4%", "crop centre", "crop", crop_centre(0.04), goal="crop"),
    _T("crop 15% off left+top", "crop two sides", "crop", crop_sides(0.15, "lt"), goal="crop"),
    _T(
        "crop 15% off right+bottom + jpeg q70",
        "crop two sides",
        "crop",
        crop_sides(0.15, "rb"),
        "JPEG:70",
        quick=True,
        goal="crop",
    ),
    *(
        _T(
            f"rotate {d} deg",
            "rotate small",
            "rotate-small",
            rotate(d),
            quick=d == 3,
            goal="rotate" if d >= 3 else None,
        )
        for d in (1, 2, 3, 5)
    ),
    _T("rotate 3 deg + resize 0.5x", "rotate small", "rotate-small", chain(rotate(3), resize(0.5))),
    _T("rotate 7 deg", "rotate small", "rotate-small", rotate(7), goal="rotate"),
    *(
        _T(
            f"rotate {d} deg + crop 5%",
            "rotate small + crop",
            "rotate-small",
            chain(rotate(d), crop_centre(0.05)),
            quick=d == -5,
            goal="rotate",
        )
        for d in (3, -5, 7)
    ),
    _T(
        "screenshot social 60%",
        "screenshot",
        "screenshot",
        social_screenshot(0.60),
        quick=True,
        goal="screenshot",
    ),
    _T(
        "screenshot social 60% + jpeg q80",
        "screenshot",
        "screenshot",
        social_screenshot(0.60),
        "JPEG:80",
        goal="screenshot",
    ),
    _T("caption band below", "caption band", "caption/logo", caption_band("below"), goal="caption"),
    _T(
        "caption band above",
        "caption band",
        "caption/logo",
        caption_band("above"),
        quick=True,
        goal="caption",
    ),
    _T(
        "caption band over photo",
        "caption band",
        "caption/logo",
        caption_band("over"),
        goal="caption",
    ),
    _T(
        "logo top-left 22%", "logo", "caption/logo", stamp_logo(0.22, "tl"), quick=True, goal="logo"
    ),
    _T(
        "logo bottom-right 15% + jpeg q70",
        "logo",
        "caption/logo",
        stamp_logo(0.15, "br"),
        "JPEG:70",
        goal="logo",
    ),
    _T("blur r4", "blur/sharpen/noise", "strong", blur(4)),
    _T("noise s25", "blur/sharpen/noise", "strong", noise(25)),
    _T("jpeg q10", "jpeg", "strong", identity, "JPEG:10"),
    _T("centre watermark", "overlay", "strong", centre_watermark),
    _T("meme text", "overlay", "strong", meme_text),
)


@dataclass(frozen=True, slots=True)
class Overlay:
    """A hard negative: ``listed`` goes on listed photos, ``query`` on *other*, unlisted photos;
    both carry the same overlay, so a match between them is a false match."""

    name: str
    listed: Edit
    query: Edit
    fmt: str = "PNG"
    quick: bool = False

    def apply(self, image: Image.Image, seed: int, *, listed: bool) -> bytes:
        edit = self.listed if listed else self.query
        return encode(edit(image, seed ^ zlib.crc32(self.name.encode())), self.fmt)


OVERLAYS: tuple[Overlay, ...] = (
    Overlay("same logo, same place", stamp_logo(0.22, "tl"), stamp_logo(0.22, "tl"), quick=True),
    Overlay("same logo, other corner and size", stamp_logo(0.22, "tl"), stamp_logo(0.30, "br")),
    Overlay("same caption band below", caption_band("below"), caption_band("below")),
    Overlay("same caption band over photo", caption_band("over"), caption_band("over")),
    Overlay("same viewer chrome", canvas(0.60), canvas(0.60)),
    Overlay(
        "same social chrome + jpeg q80",
        social_screenshot(0.60),
        social_screenshot(0.60),
        "JPEG:80",
        quick=True,
    ),
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
