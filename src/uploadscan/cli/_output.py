"""Output helpers shared by the subcommands: JSON lines, plain tables, progress on stderr."""

from __future__ import annotations

import json
import sys
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


class ProgressBar:
    """Progress of long work on stderr, drawn by tqdm only when stderr is a terminal.

    Core functions report progress through plain callbacks (``on_progress(done, total)``);
    this is the command line's rendering of them. Piped or redirected output stays clean:
    cron jobs and log files get no carriage-return noise.
    """

    def __init__(
        self, label: str, total: int | None = None, *, unit: str = "it", enabled: bool = True
    ) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            desc=label,
            unit=unit,
            unit_scale=True,
            file=sys.stderr,
            disable=not (enabled and sys.stderr.isatty()),
            leave=False,
            dynamic_ncols=True,
        )

    def __call__(self, done: int, total: int | None = None) -> None:
        """Report absolute progress (the ``on_progress(done, total)`` callback shape)."""
        if total is not None and total != self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(items: Sequence[T], label: str, *, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while showing a progress bar on stderr when it is a terminal."""
    with ProgressBar(label, len(items), enabled=enabled and len(items) > 1) as bar:
        for done, item in enumerate(items, start=1):
            yield item
            bar(done)
