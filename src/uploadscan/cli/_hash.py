"""``uploadscan hash FILE...``: all hashes of each file, one JSON object per line."""

from __future__ import annotations

import argparse
from typing import Any

from .._errors import UploadScanError
from ._output import print_json_line


def register(subparsers: Any) -> None:
    from . import add_home_argument

    parser = subparsers.add_parser("hash", help="print the hashes of files as JSON lines")
    add_home_argument(parser)
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="TYPE",
        help="also compute an optional hash type (phash, dhash, ahash, whash); repeatable",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..hashing._hash_file import hash_file

    failed = False
    for path in args.files:
        record: dict[str, Any] = {"path": path}
        try:
            result = hash_file(path, extra=args.extra)
        except (UploadScanError, OSError) as exc:
            failed = True
            record["error"] = {"type": type(exc).__name__, "message": str(exc)}
        else:
            record.update(result.to_dict())
        print_json_line(record)
    return 2 if failed else 0
