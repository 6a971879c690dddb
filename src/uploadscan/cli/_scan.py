"""``uploadscan scan FILE...``: a verdict per file as JSON lines.

Exit status 0 when every file is allowed, 1 when something was flagged (review or block),
2 when a file could not be scanned — so a shell script or CI job can gate on it. A path that
cannot be read at all (missing, a directory) is a usage error: it is reported on stderr and as
an error line, never scanned, and never enters the review queue.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._action import Action
from .._errors import UploadReadError
from .._settings import ScannerSettings
from ._arguments import add_home_argument
from ._output import print_json_line, progress

EXIT_CODES = """exit status:
  0  every file was allowed
  1  something was flagged (review or block)
  2  a file could not be read or scanned, or the arguments are wrong"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="scan files against the configured lists",
        description="Scan files against the configured lists; one JSON verdict per line.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_home_argument(parser)
    parser.add_argument("files", nargs="+", metavar="FILE")
    actions = [a.value for a in Action]
    parser.add_argument(
        "--fail-mode",
        choices=actions,
        default=None,
        help=ScannerSettings.help("fail_mode") + " (default: the data directory's, else review)",
    )
    parser.add_argument(
        "--non-media",
        choices=actions,
        default=None,
        help=ScannerSettings.help("non_media") + " (default: the data directory's, else allow)",
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
    if args.non_media:
        options["non_media"] = args.non_media
    status = 0
    with Scanner.open(args.home, **options) as scanner:
        if not scanner.lists():
            print(
                "uploadscan: warning: no hash list is configured in "
                f"{scanner.home}; every file will be allowed "
                "(add one with 'uploadscan lists add', then 'uploadscan sync')",
                file=sys.stderr,
            )
        for path in progress(args.files, "scanning"):
            try:
                verdict = scanner.scan(path)
            except UploadReadError as exc:
                print(f"uploadscan: error: {exc}", file=sys.stderr)
                print_json_line(
                    {"path": path, "error": {"type": type(exc).__name__, "message": str(exc)}}
                )
                status = 2
                continue
            print_json_line({"path": path, **verdict.to_dict()})
            if verdict.errors:
                for error in verdict.errors:
                    print(f"uploadscan: {path}: {error.message}", file=sys.stderr)
                status = 2
            elif not verdict.allowed and status == 0:
                status = 1
    return status
