"""``uploadscan sync``, ``uploadscan keys generate`` and ``uploadscan feed publish``.

``sync`` pulls lists from their sources, concurrently and each within its own deadline, and
rebuilds the index files once afterwards, so that scanners in other processes (which never
build inside a scan) pick up the new version at once. Progress (records read, then entries
indexed when an index is built) is drawn on stderr when it is a terminal; ``--watch`` stamps
every round with its time (ISO 8601, UTC) so a log shows when each round ran. ``keys`` and
``feed`` are the publisher's side of the signed HTTP feed (docs/feed.md).
"""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any

from ..sync._deadline import DEFAULT_DEADLINE_SECONDS
from ._arguments import add_home_argument
from ._output import ProgressBar, print_json_line, print_table


def register(subparsers: Any) -> None:
    sync = subparsers.add_parser("sync", help="pull configured lists from their sources")
    add_home_argument(sync)
    sync.add_argument("names", nargs="*", metavar="LIST", help="lists to sync (default: all)")
    sync.add_argument(
        "--watch", type=float, metavar="SECONDS", help="keep syncing, this long between rounds"
    )
    sync.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        default=DEFAULT_DEADLINE_SECONDS,
        help="give up on a list whose whole sync takes longer than this; it keeps its "
        "previous entries and the other lists go on (default: %(default)g)",
    )
    sync.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    sync.set_defaults(handler=run_sync)

    keys = subparsers.add_parser("keys", help="signing keys for publishing a feed")
    add_home_argument(keys)
    key_actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate = key_actions.add_parser("generate", help="create an Ed25519 key pair")
    add_home_argument(generate)
    generate.add_argument("path", help="private key file to create (public key: PATH.pub)")
    generate.set_defaults(handler=run_keys_generate)

    feed = subparsers.add_parser("feed", help="publish a hash list as a signed static feed")
    add_home_argument(feed)
    feed_actions = feed.add_subparsers(dest="feed_command", metavar="ACTION", required=True)
    publish = feed_actions.add_parser("publish", help="publish the next version of a list")
    add_home_argument(publish)
    publish.add_argument("list_file", help="the list (any format 'lists add' accepts)")
    publish.add_argument("feed_dir", help="directory served by your web server or CDN")
    publish.add_argument("--key", required=True, help="private key from 'keys generate'")
    publish.add_argument(
        "--list-name",
        "--name",
        dest="list_name",
        metavar="NAME",
        help="list name in the manifest, pinned by subscribers (default: the file's stem)",
    )
    publish.add_argument(
        "--sequence",
        type=int,
        metavar="N",
        help="publish as sequence N instead of the next one; to recover a lost feed "
        "directory, use a number above the last one published",
    )
    publish.set_defaults(handler=run_feed_publish)


def _sync_round(
    home: str | None,
    names: list[str],
    as_json: bool,
    deadline: float,
    stamp: str | None = None,
) -> int:
    from .._scanner import Scanner

    records = ProgressBar("sync", unit="records")
    entries: list[ProgressBar] = []  # drawn only if the sync leaves an index to build

    def index_progress(done: int, total: int) -> None:
        if not entries:
            records.close()
            entries.append(ProgressBar("index", unit="entries"))
        entries[0](done, total)

    try:
        with Scanner.open(home, audit=False) as scanner:
            results = scanner.sync(
                names or None,
                deadline_seconds=deadline,
                on_progress=records,
                on_index_progress=index_progress,
            )
    finally:
        records.close()
        for bar in entries:
            bar.close()
    failed = any(not result.ok for result in results)
    if as_json:
        for result in results:
            record = result.to_dict()
            if stamp is not None:
                record["round"] = stamp
            print_json_line(record)
        return 2 if failed else 0
    if stamp is not None:
        print(f"sync round at {stamp}")
    rows = [
        (
            result.list_name,
            result.added,
            result.removed,
            result.unchanged,
            result.version if result.version is not None else "-",
            f"{result.seconds:.2f}s",
            _status(result),
        )
        for result in results
    ]
    print_table(("LIST", "ADDED", "REMOVED", "UNCHANGED", "VERSION", "TIME", "STATUS"), rows)
    return 2 if failed else 0


def _status(result: Any) -> str:
    if result.timed_out:  # the error says which deadline and what was in flight
        return f"TIMED OUT, previous entries kept: {result.error}"
    return str(result.error or "ok")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def run_sync(args: argparse.Namespace) -> int:
    from .._errors import ConfigError

    if not args.deadline > 0:
        raise ConfigError("--deadline takes a positive number of seconds")
    if args.watch is None:
        return _sync_round(args.home, args.names, args.json, args.deadline)
    if args.watch <= 0:
        raise ConfigError("--watch takes a positive number of seconds")
    while True:
        _sync_round(args.home, args.names, args.json, args.deadline, stamp=_now())
        time.sleep(args.watch)


def run_keys_generate(args: argparse.Namespace) -> int:
    from ..sync import generate_keypair

    public = generate_keypair(args.path)
    print(f"private key: {args.path} (keep it secret)")
    print(f"public key:  {public}")
    print(
        "subscribers pin it: uploadscan lists add NAME --source 'https://HOST/FEED/?key="
        + public
        + "'"
    )
    return 0


def run_feed_publish(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..sync import publish_feed

    name = args.list_name or Path(args.list_file).stem
    result = publish_feed(
        args.list_file, args.feed_dir, args.key, list_name=name, sequence=args.sequence
    )
    print_json_line(dataclass_dict(result))
    return 0


def dataclass_dict(obj: Any) -> dict[str, Any]:
    import dataclasses

    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = (
            str(value) if not isinstance(value, int | float | str | bool | type(None)) else value
        )
    return out
