"""The ``uploadscan`` command line.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``handler``; this module only assembles them. Exit statuses are part of the
contract: 0 success (for ``scan``: everything allowed), 1 something flagged, 2 an error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from .._errors import UploadScanError
from . import _demo, _doctor, _hash, _jobs, _lists, _report, _review, _scan, _serve, _sync

EXIT_OK = 0
EXIT_FLAGGED = 1
EXIT_ERROR = 2

_COMMAND_MODULES = (
    _demo,
    _hash,
    _scan,
    _lists,
    _sync,
    _review,
    _report,
    _serve,
    _jobs,
    _doctor,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uploadscan",
        description="Match uploads against hash lists of known terrorist and violent-extremist "
        "content, locally.",
    )
    parser.add_argument("--version", action="version", version=f"uploadscan {__version__}")
    parser.add_argument(
        "--home",
        metavar="DIR",
        default=None,
        help="data directory (default: $UPLOADSCAN_HOME, else the user data directory)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(handler(args))
    except UploadScanError as exc:
        print(f"uploadscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
