"""``uploadscan demo``: the whole pipeline, offline, on media the package draws itself.

It shows a newcomer in one command what the library does: a block list is published as a
python-threatexchange list file, synced into a fresh data directory, and then altered copies of
the listed images (the way re-uploads really look) and unrelated images are scanned.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from .._samples import SAMPLE_NAMES, sample_image
from ._arguments import add_home_argument
from ._output import print_json_line, print_table, progress

LISTED = SAMPLE_NAMES[:3]
UNRELATED = SAMPLE_NAMES[3:]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="build a sample list and scan altered and unrelated images (offline)"
    )
    add_home_argument(parser)
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary data directory (without --home it is deleted afterwards)",
    )
    parser.set_defaults(handler=run)


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _crop(image: Image.Image, fraction: float) -> Image.Image:
    w, h = image.size
    dx, dy = int(w * fraction / 2), int(h * fraction / 2)
    return image.crop((dx, dy, w - dx, h - dy))


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "exact copy": lambda im: _jpeg(im),
    "resized to 40%": lambda im: _jpeg(im.resize((im.width * 2 // 5, im.height * 2 // 5))),
    "recompressed, quality 30": lambda im: _jpeg(im, quality=30),
    "mirrored": lambda im: _jpeg(ImageOps.mirror(im)),
    "rotated 90 degrees": lambda im: _jpeg(im.rotate(90, expand=True)),
    "greyscale PNG": lambda im: _png(ImageOps.grayscale(im)),
    "2% border cropped": lambda im: _jpeg(_crop(im, 0.02)),
    "letterboxed": lambda im: _jpeg(ImageOps.pad(im, (im.width, im.width), color="black")),
}


def run(args: argparse.Namespace) -> int:
    if args.home:
        return _run(args, Path(args.home))
    if args.keep:
        return _run(args, Path(tempfile.mkdtemp(prefix="uploadscan-demo-")))
    with tempfile.TemporaryDirectory(prefix="uploadscan-demo-") as home:
        return _run(args, Path(home))


def _run(args: argparse.Namespace, home: Path) -> int:
    from .._scanner import Scanner
    from ..hashing._hash_file import hash_file

    originals = {name: sample_image(name) for name in SAMPLE_NAMES}
    list_file = home / "demo-list.txt"
    home.mkdir(parents=True, exist_ok=True)
    lines = ["# uploadscan demo block list (python-threatexchange list file format)"]
    for name in LISTED:
        result = hash_file(_jpeg(originals[name]))
        lines.append(f"pdq {result.pdq}")
        lines.append(f"md5 {result.md5}")
    list_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    if not args.json:
        kept = args.home or args.keep
        print(f"data directory: {home}" + ("" if kept else " (temporary: deleted afterwards)"))
        print(f"block list file: {list_file} ({len(LISTED)} images: {', '.join(LISTED)})")
    rows: list[tuple[str, ...]] = []
    flagged_copies = flagged_unrelated = copies = unrelated = 0
    with Scanner.open(home) as scanner:
        if "demo-blocklist" not in {hl.name for hl in scanner.lists()}:
            scanner.add_list("demo-blocklist", kind="block", source=str(list_file))
        started = time.perf_counter()
        scanner.sync(["demo-blocklist"])
        if not args.json:
            print(f"synced in {(time.perf_counter() - started) * 1000:.0f} ms\n")
        uploads: list[tuple[str, str, bytes, bool]] = []
        for name in LISTED:
            for transform, apply in TRANSFORMS.items():
                uploads.append((name, transform, apply(originals[name]), True))
        for name in UNRELATED:
            uploads.append((name, "unrelated image", _jpeg(originals[name]), False))
        for name, transform, data, is_copy in progress(uploads, "scanning"):
            verdict = scanner.scan(data)
            best = verdict.matches[0] if verdict.matches else None
            if is_copy:
                copies += 1
                flagged_copies += not verdict.allowed
            else:
                unrelated += 1
                flagged_unrelated += not verdict.allowed
            if args.json:
                print_json_line({"sample": name, "transform": transform, **verdict.to_dict()})
                continue
            rows.append(
                (
                    name,
                    transform,
                    verdict.action.value.upper(),
                    best.list_name if best else "-",
                    f"{best.hash_type} d={best.distance}" if best else "-",
                    f"{verdict.elapsed_ms:.1f}",
                )
            )
    if not args.json:
        print_table(("SAMPLE", "UPLOAD", "VERDICT", "LIST", "EVIDENCE", "MS"), rows)
        print(
            f"\naltered copies flagged: {flagged_copies}/{copies}; "
            f"unrelated images flagged: {flagged_unrelated}/{unrelated}"
        )
    return 0 if flagged_unrelated == 0 and flagged_copies == copies else 1
