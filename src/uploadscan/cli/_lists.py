"""``uploadscan lists``: configure the hash lists of a data directory, and fill own lists.

``add|remove|show|set`` configure lists. ``add-media``, ``remove-entry`` and ``export`` work on
the platform's own lists (source ``local:``): media its moderators confirmed goes on them with
every hash computable from it, and they are exported, hashes only, for sharing back.

``lists add`` checks the source before storing it (``sync.check_source``, no network): a
missing file, an unknown scheme or a placeholder key fails here, with the reason, instead of
in the first cron-run sync; relative paths are stored absolute, since cron and systemd run
in another directory. Setting values are JSON, and ``none`` (like JSON ``null``) unsets an
optional setting such as ``max_age_seconds``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ..store._lists import HashList, ListSettings, SourceKind
from ._arguments import add_home_argument
from ._output import print_json_line, print_table, progress


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("lists", help="add, remove, show or configure hash lists")
    add_home_argument(parser)
    actions = parser.add_subparsers(dest="lists_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="configure a new list")
    add_home_argument(add)
    add.add_argument("name")
    add.add_argument(
        "--source",
        required=True,
        metavar="URI",
        help="a list file or a directory of them (text, CSV, JSON lines, vPDQ, .tmk) or a "
        "file: URI, an https:/http: signed feed, tcap:, threatexchange:, "
        "or local: for a list of your own media (filled with 'lists add-media')",
    )
    add.add_argument("--kind", choices=("block", "review", "allow"), default="block")
    add.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a list setting, e.g. pdq_threshold=31 (repeatable; see 'lists set --help')",
    )
    add.set_defaults(handler=run_add)

    remove = actions.add_parser("remove", help="remove a list and its entries")
    add_home_argument(remove)
    remove.add_argument("name")
    remove.set_defaults(handler=run_remove)

    show = actions.add_parser("show", help="show the configured lists")
    add_home_argument(show)
    show.add_argument("name", nargs="?")
    show.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    show.set_defaults(handler=run_show)

    set_ = actions.add_parser(
        "set",
        help="change list settings",
        description="Settings: "
        + ", ".join(ListSettings.known())
        + '. Values are JSON (labels=["a","b"], pdq_threshold=24); none (or null) unsets an '
        "optional setting (max_age_seconds=none, pdq_action_distance=none).",
    )
    add_home_argument(set_)
    set_.add_argument("name")
    set_.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    set_.set_defaults(handler=run_set)

    media = actions.add_parser(
        "add-media",
        help="put media on a list of your own, with every hash computable from it",
        description="Hash each file (MD5, SHA-256, PDQ; a video's PDQ frames and TMK; the "
        "crop-robust local features of pictures) and put the values on the own list NAME "
        "(source local:). The files themselves are never stored.",
    )
    add_home_argument(media)
    media.add_argument("name", help="an own list (uploadscan lists add NAME --source local:)")
    media.add_argument("files", nargs="+", metavar="FILE")
    media.add_argument("--label", action="append", default=[], help="label every value")
    media.add_argument(
        "--id", dest="entry_id", help="entry id (one file only; default: the file's SHA-256)"
    )
    media.add_argument("--json", action="store_true", help="JSON lines instead of text")
    media.set_defaults(handler=run_add_media)

    remove_entry = actions.add_parser(
        "remove-entry", help="remove one entry (every value of one media) from an own list"
    )
    add_home_argument(remove_entry)
    remove_entry.add_argument("name")
    remove_entry.add_argument("entry_id", metavar="ID")
    remove_entry.set_defaults(handler=run_remove_entry)

    export = actions.add_parser(
        "export",
        help="write a list's hashes as files others read (never its local descriptors)",
        description="Write NAME's image hashes and digests to DIR/NAME.txt (the "
        "python-threatexchange list format, which 'uploadscan feed publish' also takes), each "
        "video's frames to DIR/videos/ID.txt (vPDQ) and its TMK to DIR/tmk/ID.tmk. Local "
        "features stay local: they reveal more about a picture than a hash does.",
    )
    add_home_argument(export)
    export.add_argument("name")
    export.add_argument("directory", metavar="DIR", type=Path)
    export.set_defaults(handler=run_export)


def parse_settings(pairs: list[str], base: ListSettings | None = None) -> ListSettings:
    data = (base or ListSettings()).to_dict()
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"setting {pair!r} must look like KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, str) and value.strip().lower() == "none" and _optional(key.strip()):
            value = None
        if key == "labels" and isinstance(value, str):
            value = [v for v in value.split(",") if v]
        data[key.strip()] = value
    return ListSettings.from_dict(data)


def _optional(key: str) -> bool:
    """Whether the list setting ``key`` may be unset (its type admits ``None``)."""
    f = ListSettings.__dataclass_fields__.get(key)
    return f is not None and "None" in str(f.type)


def list_record(hash_list: HashList) -> dict[str, Any]:
    return {
        "name": hash_list.name,
        "kind": hash_list.kind.value,
        "source": hash_list.source,
        "entries": hash_list.entry_count,
        "by_type": hash_list.counts_by_type,
        "version": hash_list.version,
        "last_sync": hash_list.last_sync,
        "settings": hash_list.settings.to_dict(),
    }


def run_add(args: argparse.Namespace) -> int:
    from .._scanner import Scanner
    from ..sync import check_source

    settings = parse_settings(args.set)
    with Scanner.open(args.home, audit=False) as scanner:
        checked = check_source(args.source, home=scanner.home)
        hash_list = scanner.add_list(
            args.name, kind=args.kind, source=checked.uri, settings=settings
        )
        print(f"added {hash_list.kind.value} list {hash_list.name!r} from {checked.description}")
        if hash_list.source_kind is SourceKind.LOCAL:
            print(f"fill it with `uploadscan lists add-media {hash_list.name} FILE...`")
        elif checked.missing is not None:
            print(f"before it can sync, set up {checked.missing}; then run `uploadscan sync`")
        else:
            print("run `uploadscan sync` to fill it")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from .._scanner import Scanner

    with Scanner.open(args.home, audit=False) as scanner:
        scanner.remove_list(args.name)
        print(f"removed list {args.name!r}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from .._scanner import Scanner

    with Scanner.open(args.home, audit=False) as scanner:
        lists = scanner.lists()
        if args.name:
            lists = [scanner.store.get_list(args.name)]
        if args.json:
            for hash_list in lists:
                print_json_line(list_record(hash_list))
            return 0
        rows = [
            (
                hl.name,
                hl.kind.value,
                hl.entry_count,
                ",".join(f"{k}:{v}" for k, v in sorted(hl.counts_by_type.items())),
                hl.version,
                _age(hl.last_sync),
                hl.source,
            )
            for hl in lists
        ]
        print_table(("NAME", "KIND", "ENTRIES", "TYPES", "VERSION", "SYNCED", "SOURCE"), rows)
    return 0


def run_set(args: argparse.Namespace) -> int:
    from .._scanner import Scanner

    with Scanner.open(args.home, audit=False) as scanner:
        current = scanner.store.get_list(args.name)
        settings = parse_settings(args.settings, current.settings)
        scanner.store.update_settings(args.name, settings)
        print(json.dumps(settings.to_dict(), sort_keys=True))
    return 0


def _age(when: float | None) -> str:
    if when is None:
        return "never"
    seconds = max(0.0, time.time() - when)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def run_add_media(args: argparse.Namespace) -> int:
    from .._scanner import Scanner

    if args.entry_id is not None and len(args.files) > 1:
        raise ConfigError("--id names one entry: give one file with it")
    with Scanner.open(args.home, audit=False) as scanner:
        for path in progress(args.files, "hashing"):
            entry = scanner.add_media(args.name, path, labels=args.label, entry_id=args.entry_id)
            if args.json:
                print_json_line({"path": path, **entry.to_dict()})
                continue
            added = ", ".join(f"{n} {t}" for t, n in sorted(entry.counts.items()))
            print(f"{path}: entry {entry.entry_id} on {entry.list_name}: {added}")
            for reason in entry.skipped:
                print(f"  not listed: {reason}")
    return 0


def run_remove_entry(args: argparse.Namespace) -> int:
    from .._scanner import Scanner

    with Scanner.open(args.home, audit=False) as scanner:
        removed = scanner.remove_media(args.name, args.entry_id)
    print(f"removed entry {args.entry_id} ({removed} value(s)) from {args.name}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .._own_lists import export_list
    from .._scanner import Scanner

    with Scanner.open(args.home, audit=False) as scanner:
        result = export_list(scanner.store, args.name, args.directory)
    for path in result.files:
        print(f"wrote {path}")
    for path in result.removed:
        print(f"removed {path} (its entry is no longer on the list)")
    for hash_type, count in sorted(result.kept_local.items()):
        print(f"kept local: {count} {hash_type} value(s)")
    return 0
