"""Output helpers shared by the subcommands: JSON lines, plain tables, progress on stderr."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


def print_json_line(obj: Any, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(json.dumps(obj, sort_keys=False, separators=(",", ":")) + "\n")
    out.flush()


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    text_rows = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in text_rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def progress(items: Sequence[T], label: str, *, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while drawing a progress bar on stderr when it is a terminal."""
    show = enabled and sys.stderr.isatty() and len(items) > 1
    total = len(items)
    started = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        if show:
            width = 30
            filled = int(width * done / total)
            rate = done / max(time.monotonic() - started, 1e-9)
            sys.stderr.write(
                f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:.1f}/s"
            )
            sys.stderr.flush()
    if show:
        sys.stderr.write("\n")
