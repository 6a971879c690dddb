"""``uploadscan scan FILE...``: a verdict per file as JSON lines.

Exit status 0 when every file is allowed, 1 when something was flagged (review or block),
2 when a file could not be scanned — so a shell script or CI job can gate on it.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._output import print_json_line, progress


def register(subparsers: Any) -> None:
    from . import add_home_argument

    parser = subparsers.add_parser("scan", help="scan files against the configured lists")
    add_home_argument(parser)
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument(
        "--fail-mode",
        choices=("allow", "review", "block"),
        default=None,
        help="action when a file cannot be hashed or a list is stale (default: review)",
    )
    parser.add_argument(
        "--no-audit", action="store_true", help="do not record the decisions in the audit log"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .._scanner import Scanner

    options: dict[str, Any] = {"audit": not args.no_audit}
    if args.fail_mode:
        options["fail_mode"] = args.fail_mode
    status = 0
    with Scanner.open(args.home, **options) as scanner:
        for path in progress(args.files, "scanning"):
            verdict = scanner.scan(path)
            record = {"path": path, **verdict.to_dict()}
            print_json_line(record)
            if verdict.errors:
                status = 2
            elif not verdict.allowed and status == 0:
                status = 1
    return status
