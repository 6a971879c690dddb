"""Reading list files line by line: numbered, length-limited, strictly UTF-8, and hashed.

Split from ``_files`` so the format parsers there read as parsers. ``HashingReader`` feeds
every byte it hands out to SHA-256, so a parse covers exactly the bytes whose digest became
the checkpoint; ``Lines`` makes every parse error name the file and line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .._errors import SyncError

__all__ = [
    "MAX_LINE",
    "HashingReader",
    "Lines",
    "file_digest",
    "file_digest_and_lines",
    "open_list_file",
]

MAX_LINE = 1 << 20
BLOCK = 1 << 20
_REPORT_EVERY = 4096  # lines between progress reports (each one may check the deadline)
_GZIP_MAGIC = b"\x1f\x8b"


class Lines:
    """Numbered, length-limited, strictly UTF-8 lines of one file; ``error`` names the line.

    ``on_lines(n)``, if given, hears about lines as they are read, a few thousand at a time
    (a sync's progress and deadline check); lines pushed back by ``peek_first`` count once.
    """

    def __init__(
        self, path: Path, stream: IO[bytes], on_lines: Callable[[int], None] | None = None
    ) -> None:
        self.path = path
        self._stream = stream
        self.lineno = 0
        self._pushed: list[bytes] = []
        self._on_lines = on_lines
        self._unreported = 0

    def _count(self, lines: int, *, flush: bool = False) -> None:
        if self._on_lines is None:
            return
        self._unreported += lines
        if self._unreported >= _REPORT_EVERY or (flush and self._unreported > 0):
            done, self._unreported = self._unreported, 0
            self._on_lines(done)

    def error(self, message: str) -> SyncError:
        return SyncError(f"{self.path}, line {self.lineno}: {message}")

    def _raw(self) -> Iterator[bytes]:
        while True:
            line = self._pushed.pop() if self._pushed else self._stream.readline(MAX_LINE + 1)
            if not line:
                self._count(0, flush=True)
                return
            self.lineno += 1
            self._count(1)
            if len(line) > MAX_LINE:
                raise self.error(f"line longer than {MAX_LINE} bytes")
            yield line

    def peek_first(self) -> bytes:
        """The first non-blank, non-comment line (consumed lines are pushed back)."""
        seen: list[bytes] = []
        first = b""
        for line in self._raw():
            seen.append(line)
            stripped = line.strip()
            if stripped and not stripped.startswith(b"#"):
                first = stripped
                break
        self._pushed.extend(reversed(seen))
        self.lineno -= len(seen)
        if self._on_lines is not None:  # read again by the next pass: counted there
            self._unreported -= len(seen)
        return first

    def text(self, *, skip_comments: bool = False) -> Iterator[str]:
        for raw in self._raw():
            line = self.decode(raw)
            if skip_comments and line.lstrip().startswith("#"):
                continue
            yield line

    def decode(self, raw: bytes) -> str:
        """Line ``self.lineno`` as text: strictly UTF-8, a leading BOM dropped."""
        if len(raw) > MAX_LINE:
            raise self.error(f"line longer than {MAX_LINE} bytes")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("not valid UTF-8") from None
        if line.startswith("\ufeff") and self.lineno == 1:
            line = line[1:]
        return line

    def blocks(self, size: int = BLOCK) -> Iterator[tuple[int, bytes]]:
        """The rest of the file as runs of whole lines, each run ending in ``b"\n"`` (one is
        added after a last line that lacks it), with the number of its first line.

        For bulk parsers: ``lineno`` is left at the last line of the run just yielded, so
        set it before ``error``/``decode`` on a line inside a run.
        """
        head = b"".join(reversed(self._pushed))
        self._pushed.clear()
        while True:
            chunk = head + self._stream.read(size)
            head = b""
            if not chunk:
                self._count(0, flush=True)
                return
            if not chunk.endswith(b"\n"):
                chunk += self._stream.readline(MAX_LINE + 1)
                partial = len(chunk) - 1 - chunk.rfind(b"\n")
                if partial > MAX_LINE:
                    self.lineno += chunk.count(b"\n") + 1
                    raise self.error(f"line longer than {MAX_LINE} bytes")
                if partial:
                    chunk += b"\n"
            first = self.lineno + 1
            count = chunk.count(b"\n")
            self.lineno += count
            self._count(count)
            yield first, chunk


class HashingReader:
    """Reads a binary file while feeding SHA-256, so a parse covers exactly the bytes hashed."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._sha = hashlib.sha256()
        self._buffer = b""

    def peek(self, n: int) -> bytes:
        if len(self._buffer) < n:
            more = self._f.read(n - len(self._buffer))
            self._sha.update(more)
            self._buffer += more
        return self._buffer[:n]

    def read(self, n: int = -1) -> bytes:
        if self._buffer:
            data, self._buffer = self._buffer, b""
            if n < 0:
                rest = self._f.read()
                self._sha.update(rest)
                return data + rest
            if len(data) >= n:
                data, self._buffer = data[:n], data[n:]
                return data
            rest = self._f.read(n - len(data))
            self._sha.update(rest)
            return data + rest
        data = self._f.read(n)
        self._sha.update(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        if self._buffer:
            head = self.read(len(self._buffer))
            if b"\n" in head:  # only possible on tiny peeks; keep it simple
                line, _, rest = head.partition(b"\n")
                self._buffer = rest
                return line + b"\n"
            return head + self.readline(limit - len(head) if limit >= 0 else -1)
        line = self._f.readline(limit)
        self._sha.update(line)
        return line

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def open_list_file(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise SyncError(f"cannot read list file {path}: {exc.strerror or exc}") from None


def file_digest_and_lines(f: IO[bytes], path: Path) -> tuple[str, int | None]:
    """SHA-256 of the file and its number of lines (``None`` for a gzip file, whose lines
    are unknown until it is decompressed): one pass, for the digest and for progress."""
    sha = hashlib.sha256()
    lines = 0
    last = b""
    compressed: bool | None = None
    try:
        while chunk := f.read(1 << 20):
            if compressed is None:
                compressed = chunk[:2] == _GZIP_MAGIC
            sha.update(chunk)
            if not compressed:
                lines += chunk.count(b"\n")
            last = chunk[-1:]
    except OSError as exc:
        raise SyncError(f"cannot read list file {path}: {exc.strerror or exc}") from None
    if compressed:
        return sha.hexdigest(), None
    return sha.hexdigest(), lines + (1 if last not in (b"", b"\n") else 0)


def file_digest(f: IO[bytes], path: Path) -> str:
    sha = hashlib.sha256()
    try:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    except OSError as exc:
        raise SyncError(f"cannot read list file {path}: {exc.strerror or exc}") from None
    return sha.hexdigest()
