"""``uploadscan hash FILE...``: all hashes of each file, one JSON object per line.

With ``--vpdq DIR`` it also writes each video's PDQ frames as a vPDQ text file
(``DIR/<name>.txt``, the format ThreatExchange's ``vpdq`` reads), ready to publish as a list.
With ``--tmk DIR`` it writes each video's TMK+PDQF value as a reference-layout ``.tmk`` file
(``DIR/<name>.tmk``, what ThreatExchange's ``tmk-hash-video`` writes), from the same decode
that gave the JSON line's hashes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._errors import UploadScanError
from ._arguments import add_home_argument
from ._output import print_json_line

EXIT_CODES = """exit status:
  0  every file was hashed
  2  a file could not be read or hashed, or the arguments are wrong"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "hash",
        help="print the hashes of files as JSON lines",
        description="Print the hashes of files as JSON lines (MD5 and SHA-256 of any file, "
        "PDQ of images, PDQ frames and TMK+PDQF of videos).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_home_argument(parser)
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="TYPE",
        help="also compute an optional hash type (phash, dhash, ahash, whash); repeatable",
    )
    parser.add_argument(
        "--vpdq",
        metavar="DIR",
        type=Path,
        help="also write each video's vPDQ file (frame,quality,pdq,timestamp) to DIR/NAME.txt",
    )
    parser.add_argument(
        "--vpdq-rate",
        metavar="FPS",
        type=float,
        default=None,
        help="frames per second for --vpdq (default: every frame, as vpdq does)",
    )
    parser.add_argument(
        "--tmk",
        metavar="DIR",
        type=Path,
        help="also write each video's TMK+PDQF hash as a .tmk file to DIR/NAME.tmk",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..hashing._hash_file import hash_file, types_for

    try:
        types_for(args.extra)  # one argument error, before any file is read
    except UploadScanError as exc:
        print(f"uploadscan hash: error: --extra: {exc}", file=sys.stderr)
        return 2
    if args.vpdq_rate is not None and not args.vpdq_rate > 0:
        print("uploadscan hash: error: --vpdq-rate must be a positive number", file=sys.stderr)
        return 2
    failed = False
    for path in args.files:
        record: dict[str, Any] = {"path": path}
        try:
            result = hash_file(path, extra=args.extra)
            record.update(result.to_dict())
            if args.vpdq is not None and result.is_video:
                record["vpdq"] = str(_write_vpdq(Path(path), result.media_type, args))
            tmk = result.tmk
            if args.tmk is not None and tmk is not None:
                args.tmk.mkdir(parents=True, exist_ok=True)
                target = args.tmk / f"{Path(path).stem}.tmk"
                target.write_bytes(tmk)
                record["tmk_file"] = str(target)
        except (UploadScanError, OSError) as exc:
            failed = True
            record["error"] = {"type": type(exc).__name__, "message": str(exc)}
            print(f"uploadscan hash: {path}: {exc}", file=sys.stderr)
        print_json_line(record)
    return 2 if failed else 0


def _write_vpdq(path: Path, media_type: str, args: argparse.Namespace) -> Path:
    """Every frame (or ``--vpdq-rate`` frames a second, keyframes included) in vPDQ text."""
    from ..hashing._pdq import hash_video
    from ..hashing._vpdq import write_vpdq
    from ..media._limits import DEFAULT_LIMITS

    interval = None if args.vpdq_rate is None else 1.0 / args.vpdq_rate
    video = hash_video(
        path.read_bytes(),
        media_type,
        DEFAULT_LIMITS,
        interval=interval,
        trim_borders=False,
        dedupe=False,
    )
    args.vpdq.mkdir(parents=True, exist_ok=True)
    target: Path = args.vpdq / f"{path.stem}.txt"
    target.write_text(write_vpdq(video.frames), encoding="utf-8")
    return target
