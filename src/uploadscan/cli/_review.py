"""``uploadscan review``: the moderator's queue, decisions, and false-positive feedback."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from .._review import ReviewDecision
from ._arguments import add_home_argument
from ._output import print_json_line, print_table
from ._report import parse_time


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("review", help="list, decide and export review items")
    add_home_argument(parser)
    actions = parser.add_subparsers(dest="review_command", metavar="ACTION", required=True)

    queue = actions.add_parser("list", help="show verdicts waiting for review")
    add_home_argument(queue)
    queue.add_argument("--limit", type=int, default=50)
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(handler=run_list)

    decide = actions.add_parser("decide", help="confirm or overturn a verdict")
    add_home_argument(decide)
    decide.add_argument("verdict_id")
    decide.add_argument("decision", choices=[d.value for d in ReviewDecision])
    decide.add_argument("--note", help="the reason (exported as feedback on overturn)")
    decide.add_argument(
        "--allowlist", metavar="LIST", help="on overturn, add the upload's hashes to this list"
    )
    decide.add_argument(
        "--add-to",
        metavar="LIST",
        help="on confirm, put everything computed from the upload (--media) on this own list",
    )
    decide.add_argument(
        "--media",
        metavar="FILE",
        help="the upload itself, for --add-to (the data directory never keeps it)",
    )
    decide.add_argument("--label", action="append", default=[], help="with --add-to: a label")
    decide.add_argument("--json", action="store_true", help="print the updated record as JSON")
    decide.set_defaults(handler=run_decide)

    export = actions.add_parser("export", help="false-positive feedback for list publishers")
    add_home_argument(export)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--since", metavar="DATE")
    export.add_argument("--until", metavar="DATE")
    export.set_defaults(handler=run_export)


def run_list(args: argparse.Namespace) -> int:
    from .._review import review_queue
    from .._scanner import Scanner

    with Scanner.open(args.home, audit=False) as scanner:
        items = review_queue(scanner.store, limit=args.limit)
    if args.json:
        for item in items:
            print_json_line(item.to_dict())
        return 0
    rows = []
    for item in items:
        best = item.matches[0] if item.matches else {}
        when = dt.datetime.fromtimestamp(item.time, dt.UTC).isoformat(timespec="seconds")
        rows.append(
            (
                item.verdict_id,
                when,
                best.get("list", "-"),
                best.get("distance", "-"),
                ", ".join(best.get("labels") or []),
                "; ".join(e["type"] for e in item.errors),
            )
        )
    print_table(("VERDICT", "TIME", "LIST", "DISTANCE", "LABELS", "ERRORS"), rows)
    return 0


def run_decide(args: argparse.Namespace) -> int:
    from .._scanner import Scanner

    with Scanner.open(args.home, audit=False) as scanner:
        record = scanner.review(
            args.verdict_id,
            args.decision,
            note=args.note,
            allowlist=args.allowlist,
            add_to=args.add_to,
            media=args.media,
            labels=args.label,
        )
    if args.json:
        print_json_line(record.to_dict())
        return 0
    status = record.review_status.value if record.review_status is not None else "-"
    print(f"verdict {record.verdict_id}: {status}")
    for effect in record.review_effects:
        print(
            f"  added {len(effect.entries)} entr{'y' if len(effect.entries) == 1 else 'ies'} "
            f"to list {effect.list_name}"
        )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .._review import feedback, feedback_csv, feedback_json
    from .._scanner import Scanner

    with Scanner.open(args.home, audit=False) as scanner:
        rows = feedback(scanner.store, since=parse_time(args.since), until=parse_time(args.until))
    sys.stdout.write(feedback_csv(rows) if args.format == "csv" else feedback_json(rows) + "\n")
    return 0
