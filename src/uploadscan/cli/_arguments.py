"""Arguments every command shares (a module of its own, so that the command modules need not
import the package that imports them)."""

from __future__ import annotations

import argparse


def add_home_argument(parser: argparse.ArgumentParser) -> None:
    """Every command takes ``--home DIR``, before or after the subcommand.

    The top-level parser holds the default; a subcommand's ``--home`` only overrides it when
    given (``SUPPRESS``), so ``uploadscan --home D scan x`` and ``uploadscan scan x --home D``
    mean the same.
    """
    parser.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="data directory (default: $UPLOADSCAN_HOME, else the user data directory)",
    )
