"""``uploadscan doctor [--home DIR] [--repair]``: check the store, the index files and the
lists' sync state, and rebuild damaged index files (see ``uploadscan._doctor``).

Exit status: 0 healthy, 1 problems found, 2 a problem that could not be repaired.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._arguments import add_home_argument
from ._output import print_json_line


def register(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="check the data directory; --repair rebuilds damaged index files"
    )
    add_home_argument(doctor)
    doctor.add_argument(
        "--repair", action="store_true", help="delete and rebuild damaged index files"
    )
    doctor.add_argument(
        "--max-age",
        type=float,
        metavar="SECONDS",
        default=None,
        help="report lists not synced for this long (default: the list's max_age_seconds, "
        "else 7 days)",
    )
    doctor.add_argument("--json", action="store_true", help="one JSON object instead of text")
    doctor.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from .._doctor import DEFAULT_MAX_AGE_SECONDS, diagnose
    from .._home import resolve_home

    home = resolve_home(args.home)
    max_age = args.max_age if args.max_age is not None else DEFAULT_MAX_AGE_SECONDS
    report = diagnose(home, repair=args.repair, max_age_seconds=max_age)
    if args.json:
        print_json_line(report.to_dict())
        return report.exit_status
    print(f"data directory: {home}")
    for item in report.checked:
        print(f"  checked {item}")
    if not report.findings:
        print("healthy")
    for finding in report.findings:
        if finding.repaired:
            state = "REPAIRED"
        elif finding.repairable:
            state = "PROBLEM (uploadscan doctor --repair fixes it)"
        else:
            state = "PROBLEM"
        print(f"{state} [{finding.area}] {finding.message}")
    return report.exit_status
