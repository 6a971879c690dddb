"""``uploadscan report``: transparency-report counts from the audit log (json, csv or html)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from .._errors import ConfigError
from ._arguments import add_home_argument


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("report", help="counts for a transparency report")
    add_home_argument(parser)
    parser.add_argument("--since", metavar="DATE", help="ISO date or time (UTC), inclusive")
    parser.add_argument("--until", metavar="DATE", help="ISO date or time (UTC), exclusive")
    parser.add_argument("--format", choices=("json", "csv", "html"), default="json")
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(handler=run)


def parse_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"not an ISO date or time: {text!r} (e.g. 2026-01-31)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def run(args: argparse.Namespace) -> int:
    from .._report import build_report, report_csv, report_html, report_json
    from .._scanner import Scanner

    since, until = parse_time(args.since), parse_time(args.until)
    with Scanner.open(args.home, audit=False) as scanner:
        records = scanner.store.decisions(since=since, until=until)
    report = build_report(records, since=since, until=until)
    render = {"json": report_json, "csv": report_csv, "html": report_html}[args.format]
    text = render(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
