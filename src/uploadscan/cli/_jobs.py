"""``uploadscan retro``, ``uploadscan backfill SOURCE`` and ``uploadscan export-published DIR``.

Batch jobs over the published-content record and the back catalogue. Both jobs print one JSON
line per verdict (naming the content id) and exit 0 when nothing was flagged, 1 when something
was, 2 when a file could not be scanned. They run on a ``LocalCluster`` of ``--workers``
processes on this machine by default, on an existing Dask cluster with ``--scheduler ADDRESS``,
or in this process with ``--workers 0``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._action import Action
from .._settings import ScannerSettings
from ._arguments import add_home_argument
from ._output import ProgressBar, print_json_line


def _add_dask_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on an existing Dask cluster (e.g. tcp://10.0.0.5:8786); its workers must "
        "see the data directory at the same path",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes of the local Dask cluster (default: one per CPU; 0: no Dask, "
        "run in this process)",
    )


def register(subparsers: Any) -> None:
    retro = subparsers.add_parser(
        "retro",
        help="match entries added by recent syncs against the published-content record",
    )
    add_home_argument(retro)
    retro.add_argument(
        "--since-version",
        type=int,
        default=None,
        metavar="N",
        help="entries added after store version N (default: where the last run stopped)",
    )
    retro.add_argument("--upto-version", type=int, default=None, metavar="N")
    retro.add_argument(
        "--parquet", metavar="DIR", default=None, help="read the record from a Parquet export"
    )
    retro.add_argument(
        "--shard-rows",
        type=int,
        default=None,
        metavar="N",
        help="contents of the SQLite record per task (default: about 4 tasks per worker)",
    )
    retro.add_argument("--no-audit", action="store_true", help="do not record the verdicts")
    _add_dask_arguments(retro)
    retro.set_defaults(handler=run_retro)

    backfill = subparsers.add_parser(
        "backfill", help="scan stored media (a directory, a listing file or a URL), resumably"
    )
    add_home_argument(backfill)
    backfill.add_argument("source", metavar="SOURCE")
    backfill.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=None,
        help="checkpoint file (default: in the data directory, named after SOURCE)",
    )
    backfill.add_argument("--restart", action="store_true", help="ignore the checkpoint")
    backfill.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help="files per task (default: about 8 tasks per worker, at most 32 files each)",
    )
    backfill.add_argument(
        "--fail-mode",
        choices=[a.value for a in Action],
        default=None,
        help=ScannerSettings.help("fail_mode"),
    )
    backfill.add_argument(
        "--no-record", action="store_true", help="do not write the published-content record"
    )
    backfill.add_argument("--no-audit", action="store_true", help="do not record the verdicts")
    _add_dask_arguments(backfill)
    backfill.set_defaults(handler=run_backfill)

    export = subparsers.add_parser(
        "export-published", help="write the published-content record as Parquet shards"
    )
    add_home_argument(export)
    export.add_argument("directory", metavar="DIR")
    export.add_argument("--shard-rows", type=int, default=1_000_000, metavar="N")
    export.set_defaults(handler=run_export)


def _workers(args: argparse.Namespace) -> int | None:
    if args.workers is None and args.scheduler is None:
        return max(1, os.cpu_count() or 1)
    return int(args.workers) if args.workers is not None else None


def run_retro(args: argparse.Namespace) -> int:
    from .._scanner import Scanner
    from ..batch import retro

    flagged = False

    def show(result: Any) -> None:
        nonlocal flagged
        flagged = True
        print_json_line(result.to_dict())

    with Scanner.open(args.home, audit=False) as scanner, ProgressBar("retro", unit="hash") as bar:
        retro(
            scanner,
            since_version=args.since_version,
            upto_version=args.upto_version,
            parquet=args.parquet,
            scheduler=args.scheduler,
            workers=_workers(args),
            shard_rows=args.shard_rows,
            record_audit=not args.no_audit,
            on_verdict=show,
            on_progress=bar,
        )
    return 1 if flagged else 0


def run_backfill(args: argparse.Namespace) -> int:
    from .._scanner import Scanner
    from ..batch import backfill

    status = 0

    def show(item: Any) -> None:
        nonlocal status
        print_json_line(item.to_dict())
        if item.verdict is None or item.verdict.errors:
            status = 2
        elif not item.verdict.allowed and status == 0:
            status = 1

    options: dict[str, Any] = {}
    if args.fail_mode:
        options["fail_mode"] = args.fail_mode
    with (
        Scanner.open(args.home, audit=False, **options) as scanner,
        ProgressBar("backfill", unit="file") as bar,
    ):
        backfill(
            scanner,
            args.source,
            checkpoint=args.checkpoint,
            restart=args.restart,
            batch_size=args.batch_size,
            scheduler=args.scheduler,
            workers=_workers(args),
            record=not args.no_record,
            record_audit=not args.no_audit,
            options=options,
            on_item=show,
            on_progress=bar,
        )
    return status


def run_export(args: argparse.Namespace) -> int:
    from .._home import resolve_home
    from ..batch import PUBLISHED_FILENAME, PublishedRecord, export_parquet

    home = resolve_home(args.home)
    with PublishedRecord.open(home / PUBLISHED_FILENAME) as record:
        files = export_parquet(record, args.directory, shard_rows=args.shard_rows)
    for path in files:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """These commands alone (``python -m uploadscan.cli._batch``), same exit statuses."""
    from .._errors import UploadScanError

    parser = argparse.ArgumentParser(prog="uploadscan")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except UploadScanError as exc:
        print(f"uploadscan: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
