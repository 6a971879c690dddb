"""Hash lists in local files: python-threatexchange's formats, generic CSV/JSON lines, vPDQ,
TMK.

A file is a full snapshot of its list, so it is one ``replace`` batch: entries missing from
the new file are removed. The batch's checkpoint is the SHA-256 of the file (and of the parse
options), so an unchanged file is not re-applied. The file is read twice: once to hash it,
once to parse it while hashing again; if the two digests differ the file changed underneath
us and the batch fails rather than applying a mix of two versions.
Parsing streams (a million-line list is never a million objects at once) and every error
names the file and line.

Formats (``format=auto`` tells them apart by content):

- ``te``: python-threatexchange's local file (``LocalFileSignalExchangeAPI``): one
  ``<signal_type> <hash>`` per line, or a bare hash whose type is inferred from its length
  (64 hex: ``bare_type``, default pdq; 32 hex: md5). ``#`` comments and blank lines are
  ignored.
- ``te_csv``: ``threatexchange dataset --csv`` output, header
  ``signal_type,signal_str,collab,category,tags`` (tags space-separated).
- ``csv``: a header row and columns named by ``hash_type_column`` / ``value_column`` /
  ``labels_column`` / ``id_column`` (defaults ``hash_type,value,labels,id``); labels are
  separated by spaces, ``;`` or ``|``. ``hash_type=`` gives the type when there is no type
  column.
- ``jsonl``: one JSON object per line with the same keys; ``labels`` a list or a string.
- ``vpdq``: vPDQ's ``frame,quality,pdq_hex,timestamp`` lines; the file is one video.
- ``tmk``: a reference-layout ``.tmk`` file (binary, as ``tmk-hash-video`` and ``uploadscan
  hash --tmk`` write it); the file is one video, its entry id the file name without ``.tmk``.
  Told apart by its first 12 bytes, the magics ``TMK1FVECPDQF`` (the ``HASH_TMK`` text form
  has a ``|`` after them and is a line format's value instead). Read whole, at most
  ``MAX_TMK_BYTES``.

In CSV and JSON lines a ``tmk`` value is the ``HASH_TMK`` text or base64 of the whole ``.tmk``
file (``decode_value``); either fits a line (351 KB).

Gzip-compressed files are read transparently. A directory source reads every regular file in
it (sorted by name, hidden files skipped) as one list, each file in its own format: a
directory of ``.tmk`` files is a list of videos.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from .._errors import ConfigError, InvalidHashError, SyncError, UnknownHashTypeError
from ..hashing._result import FrameHash
from ..hashing._tmk_format import (
    FILE_TYPE_MAGIC,
    MAX_TMK_BYTES,
    PDQF_MAGIC,
    PROJECT_MAGIC,
    encode_text,
)
from ..hashing._vpdq import MIN_QUALITY
from ..store._lists import EntryUpsert
from ..store._packed import PackedRun, PackedUpserts
from ..store._videos import group_frames
from ._base import FetchBatch, bounded_labels, map_signal_type
from ._entry_builder import EntryBuilder
from ._filelines import MAX_LINE, HashingReader, Lines, file_digest_and_lines, open_list_file
from ._tepacked import TeFormat, te_runs

__all__ = ["FORMATS", "FileSource"]

FORMATS = ("auto", "te", "te_csv", "csv", "jsonl", "vpdq", "tmk")
_MAX_FILES = 100_000
_GZIP_MAGIC = b"\x1f\x8b"
_TMK_MAGIC = PROJECT_MAGIC + FILE_TYPE_MAGIC + PDQF_MAGIC
# Field limit for the csv module (default 128 KiB): a TMK value is 351 KB. Lines are bounded
# by MAX_LINE already; this bounds a quoted field that spans lines the same way.
_CSV_FIELD_LIMIT = MAX_LINE
_LABEL_SPLIT = re.compile(r"[\s;|]+")
_VPDQ_LINE = re.compile(r"\s*\d+\s*,\s*\d+\s*,\s*[0-9a-fA-F]{64}\s*,\s*[0-9.eE+-]+\s*")
_OPTION_NAMES = (
    "format",
    "bare_type",
    "hash_type",
    "hash_type_column",
    "value_column",
    "labels_column",
    "id_column",
    "labels",
)


class FileSource:
    """A list file (or a directory of them). See the module docstring for the formats."""

    def __init__(self, path: Path | str, options: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        opts = dict(options or {})
        unknown = sorted(set(opts) - set(_OPTION_NAMES))
        if unknown:
            raise ConfigError(
                f"unknown file source option(s) {', '.join(unknown)}; "
                f"known: {', '.join(_OPTION_NAMES)}"
            )
        self.format = opts.get("format", "auto")
        if self.format not in FORMATS:
            raise ConfigError(
                f"file format must be one of {', '.join(FORMATS)}, got {self.format!r}"
            )
        self.bare_type = opts.get("bare_type", "pdq")
        self.fixed_type = opts.get("hash_type")
        self.columns = {
            "hash_type": opts.get("hash_type_column", "hash_type"),
            "value": opts.get("value_column", "value"),
            "labels": opts.get("labels_column", "labels"),
            "id": opts.get("id_column", "id"),
        }
        self.extra_labels = bounded_labels(_LABEL_SPLIT.split(opts.get("labels", "")))
        self._te = TeFormat(self.bare_type, self.extra_labels)
        # Column options only mean something for CSV/JSON lines: auto-detection honours that.
        self._tabular = any(k.endswith("_column") or k == "hash_type" for k in opts)
        self._options_key = json.dumps(sorted(opts.items()))

    @property
    def description(self) -> str:
        return f"file {self.path}"

    # ------------------------------------------------------------------ fetching

    def fetch(self, checkpoint: str | None) -> Iterator[FetchBatch]:
        digests: list[tuple[Path, str]] = []
        outer = hashlib.sha256(self._options_key.encode())
        total_lines: int | None = 0
        tmk_files: set[Path] = set()
        for path in self._files():
            with open_list_file(path) as f:
                digest, lines = file_digest_and_lines(f, path)
            if self._is_tmk(path):
                tmk_files.add(path)
                lines = 1  # one record, whatever newline bytes its floats hold
            digests.append((path, digest))
            outer.update(f"{path.name}\0{digest}\0".encode())
            total_lines = None if total_lines is None or lines is None else total_lines + lines
        current = "sha256:" + outer.hexdigest()
        if current == checkpoint:
            return
        # Progress counts lines read (bulk-parsed lines are never single objects).
        batch = FetchBatch(checkpoint=current, replace=True, pending=total_lines, counts_reads=True)
        skipped, on_lines = batch.skipped, batch.note_read
        if not tmk_files and all(self._format_of(path) == "te" for path, _ in digests):
            batch.upserts = PackedUpserts(lambda: self._pack_all(digests, skipped, on_lines))
        else:
            batch.upserts = self._parse_all(digests, skipped, on_lines, tmk_files)
        yield batch

    def _files(self) -> list[Path]:
        path = self.path
        try:
            if path.is_dir():
                files = sorted(
                    p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                )
                if len(files) > _MAX_FILES:
                    raise SyncError(f"{path}: more than {_MAX_FILES} files")
                return files
            if path.is_file():
                return [path]
        except OSError as exc:
            raise SyncError(f"cannot read list {path}: {exc.strerror or exc}") from None
        raise SyncError(f"list file {path} does not exist")

    def _parse_all(
        self,
        digests: list[tuple[Path, str]],
        skipped: Counter[str],
        on_lines: Callable[[int], None] | None = None,
        tmk_files: set[Path] | None = None,
    ) -> Iterator[EntryUpsert]:
        """Parse each file while hashing it again: a file replaced or rewritten since it was
        hashed fails the batch instead of applying a mix of two versions."""
        builder = EntryBuilder(skipped)
        for path, digest in digests:
            with open_list_file(path) as f:
                reader = HashingReader(f)
                if tmk_files and path in tmk_files:
                    yield from self._parse_tmk(path, reader, builder, on_lines)
                else:
                    yield from self._parse_file(path, reader, builder, on_lines)
                while reader.read(1 << 16):
                    pass
            if reader.hexdigest() != digest:
                raise SyncError(f"{path}: the file changed while it was being read; sync again")

    def _pack_all(
        self,
        digests: list[tuple[Path, str]],
        skipped: Counter[str],
        on_lines: Callable[[int], None] | None = None,
    ) -> Iterator[PackedRun]:
        """``_parse_all`` for files that are all in the ``te`` format, as packed runs."""
        builder = EntryBuilder(skipped)
        for index, (path, digest) in enumerate(digests):
            with open_list_file(path) as f:
                reader = HashingReader(f)
                lines = Lines(path, _decompressed(reader), on_lines)
                if self.format == "auto":
                    _detect(lines, tabular=self._tabular)  # keeps lineno and position in step
                try:
                    yield from te_runs(lines, builder, self._te, index << 40)
                except (InvalidHashError, UnknownHashTypeError) as exc:
                    raise lines.error(str(exc)) from None
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    raise SyncError(f"{path}: cannot read: {exc}") from None
                while reader.read(1 << 16):
                    pass
            if reader.hexdigest() != digest:
                raise SyncError(f"{path}: the file changed while it was being read; sync again")

    def _is_tmk(self, path: Path) -> bool:
        """Whether ``path`` is read as a binary ``.tmk`` file (its first 12 bytes, after
        gzip, are the TMK magics and no ``|`` follows them)."""
        if self.format != "auto":
            return self.format == "tmk"
        try:
            with open_list_file(path) as f:
                head = _decompressed(HashingReader(f)).read(len(_TMK_MAGIC) + 1)
        except (OSError, EOFError, zlib.error):
            return False  # the parse proper reports it
        return head[: len(_TMK_MAGIC)] == _TMK_MAGIC and head[len(_TMK_MAGIC) :] != b"|"

    def _format_of(self, path: Path) -> str:
        if self.format != "auto":
            return self.format
        try:
            with open_list_file(path) as f:
                return _detect(Lines(path, _decompressed(HashingReader(f))), tabular=self._tabular)
        except (OSError, EOFError, gzip.BadGzipFile):
            return "unknown"  # the parse proper reports it

    def _parse_file(
        self,
        path: Path,
        raw: HashingReader,
        builder: EntryBuilder,
        on_lines: Callable[[int], None] | None = None,
    ) -> Iterator[EntryUpsert]:
        lines = Lines(path, _decompressed(raw), on_lines)
        fmt = self.format
        if fmt == "auto":
            fmt = _detect(lines, tabular=self._tabular)
        parser = {
            "te": self._parse_te,
            "te_csv": self._parse_te_csv,
            "csv": self._parse_csv,
            "jsonl": self._parse_jsonl,
            "vpdq": self._parse_vpdq,
        }[fmt]
        try:
            yield from parser(lines, builder)
        except (InvalidHashError, UnknownHashTypeError) as exc:
            raise lines.error(str(exc)) from None
        except csv.Error as exc:
            raise lines.error(f"malformed CSV: {exc}") from None
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise SyncError(f"{path}: cannot read: {exc}") from None

    # ------------------------------------------------------------------ formats

    def _parse_tmk(
        self,
        path: Path,
        raw: HashingReader,
        builder: EntryBuilder,
        on_lines: Callable[[int], None] | None = None,
    ) -> Iterator[EntryUpsert]:
        """One listed video: a ``.tmk`` file, read whole but never past ``MAX_TMK_BYTES``
        (a gzip bomb stops there too); its entry id is the file name without ``.tmk``."""
        try:
            data = _decompressed(raw).read(MAX_TMK_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise SyncError(f"{path}: cannot read: {exc}") from None
        if len(data) > MAX_TMK_BYTES:
            raise SyncError(f"{path}: over {MAX_TMK_BYTES} bytes, too large for a .tmk file")
        name = path.name.removesuffix(".gz").removesuffix(".tmk")
        try:
            entry = builder.upsert("tmk", encode_text(data), self.extra_labels, name or None)
        except InvalidHashError as exc:
            raise SyncError(f"{path}: not a usable .tmk file: {exc}") from None
        if on_lines is not None:
            on_lines(1)
        if entry is not None:
            yield entry

    def _parse_te(self, lines: Lines, builder: EntryBuilder) -> Iterator[EntryUpsert]:
        for line in lines.text():
            record = self._te.record(line, lines, builder)
            if record is not None:
                entry = builder.upsert(*record)
                if entry is not None:
                    yield entry

    def _parse_te_csv(self, lines: Lines, builder: EntryBuilder) -> Iterator[EntryUpsert]:
        rows = _csv_rows(lines)
        missing = {"signal_type", "signal_str"} - set(rows.fieldnames or ())
        if missing:
            raise lines.error(f"CSV header lacks column(s) {', '.join(sorted(missing))}")
        for row in rows:
            name, value = row.get("signal_type"), row.get("signal_str")
            if not name or not value:
                raise lines.error("row lacks signal_type or signal_str")
            mapped = map_signal_type(name)
            if mapped is None:
                builder.skipped[f"{name} (not a hash type uploadscan matches)"] += 1
                continue
            if (row.get("category") or "").strip().upper() == "NEGATIVE_CLASS":
                builder.skipped["negative opinion (NEGATIVE_CLASS)"] += 1
                continue
            labels = bounded_labels(
                (*mapped[1], *self.extra_labels, *_LABEL_SPLIT.split(row.get("tags") or ""))
            )
            collab = (row.get("collab") or "").strip()
            entry = builder.upsert(
                mapped[0], value, labels, None, {"collab": collab} if collab else None
            )
            if entry is not None:
                yield entry

    def _parse_csv(self, lines: Lines, builder: EntryBuilder) -> Iterator[EntryUpsert]:
        rows = _csv_rows(lines)
        fields = set(rows.fieldnames or ())
        cols = self.columns
        if cols["value"] not in fields:
            raise lines.error(f"CSV header lacks the value column {cols['value']!r}")
        if self.fixed_type is None and cols["hash_type"] not in fields:
            raise lines.error(
                f"CSV header lacks the hash type column {cols['hash_type']!r} "
                "(or set hash_type= for the whole file)"
            )
        for row in rows:
            yield from self._record(row, lines, builder)

    def _parse_jsonl(self, lines: Lines, builder: EntryBuilder) -> Iterator[EntryUpsert]:
        for line in lines.text():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise lines.error(f"not valid JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise lines.error("each line must be a JSON object")
            yield from self._record(record, lines, builder)

    def _record(
        self, record: Mapping[str, Any], lines: Lines, builder: EntryBuilder
    ) -> Iterator[EntryUpsert]:
        cols = self.columns
        value = record.get(cols["value"])
        hash_type = self.fixed_type or record.get(cols["hash_type"])
        if not isinstance(value, str) or not value:
            raise lines.error(f"missing or non-string {cols['value']!r}")
        if not isinstance(hash_type, str) or not hash_type:
            raise lines.error(f"missing or non-string {cols['hash_type']!r}")
        mapped = map_signal_type(hash_type)
        if mapped is None:
            builder.skipped[f"{hash_type} (not a hash type uploadscan matches)"] += 1
            return
        raw_labels = record.get(cols["labels"]) or ()
        if isinstance(raw_labels, str):
            raw_labels = _LABEL_SPLIT.split(raw_labels)
        if not isinstance(raw_labels, list | tuple) or not all(
            isinstance(x, str) for x in raw_labels
        ):
            raise lines.error(f"{cols['labels']!r} must be a string or a list of strings")
        external_id = record.get(cols["id"])
        if external_id is not None and not isinstance(external_id, str | int):
            raise lines.error(f"{cols['id']!r} must be a string or an integer")
        extra = record.get("extra")
        if extra is not None and not isinstance(extra, dict):
            raise lines.error("'extra' must be a JSON object")
        labels = bounded_labels((*mapped[1], *self.extra_labels, *raw_labels))
        entry = builder.upsert(
            mapped[0],
            value,
            labels,
            None if external_id in (None, "") else str(external_id),
            extra,
        )
        if entry is not None:
            yield entry

    def _parse_vpdq(self, lines: Lines, builder: EntryBuilder) -> Iterator[EntryUpsert]:
        """One listed video. The store keys entries by hash value, and a video repeats frame
        hashes (a still scene), so frames are grouped by hash: each entry carries every
        timestamp at which its hash occurs (``extra["timestamps"]``), and the coverage rule
        sees the video's whole timeline again."""
        video = lines.path.name.removesuffix(".gz").removesuffix(".txt")
        labels = bounded_labels(("video", *self.extra_labels))
        frames: list[tuple[int, FrameHash]] = []
        for line in lines.text():
            text = line.strip()
            if not text or text[0] == "#":
                continue
            parts = [p.strip() for p in text.split(",")]
            if len(parts) != 4:
                raise lines.error(
                    f"expected 'frame,quality,pdq_hex,timestamp', got {len(parts)} fields"
                )
            try:
                frame, quality, timestamp = int(parts[0]), int(parts[1]), float(parts[3])
            except ValueError:
                raise lines.error(
                    "frame and quality must be integers, timestamp a number"
                ) from None
            if frame < 0 or not 0 <= quality <= 100 or not timestamp >= 0:
                raise lines.error("frame, quality (0-100) and timestamp must not be negative")
            if quality < MIN_QUALITY:
                builder.skipped["vpdq frame quality < 50 (never matched)"] += 1
                continue
            frames.append((frame, FrameHash(timestamp, parts[2].lower(), quality)))
        for value, extra in group_frames(video, frames):
            entry = builder.upsert("pdq", value, labels, f"{video}#{extra['frame']}", extra)
            if entry is not None:
                yield entry


def _decompressed(raw: HashingReader) -> IO[bytes]:
    stream: IO[bytes] = raw  # type: ignore[assignment]
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[call-overload]
    return stream


def _csv_rows(lines: Lines) -> csv.DictReader[str]:
    """CSV rows of ``lines``. The csv module's field limit is process-wide; it is raised (never
    lowered) to the line limit, so a 351 KB TMK value fits and a field is bounded as lines are."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    return csv.DictReader(lines.text(skip_comments=True))


def _detect(lines: Lines, *, tabular: bool) -> str:
    first = lines.peek_first()
    if not first:
        return "te"  # empty file: an empty list in any format
    if first.startswith(b"{"):
        return "jsonl"
    if tabular:
        return "csv"
    if b"," in first:
        if _VPDQ_LINE.fullmatch(first.decode("utf-8", "replace")):
            return "vpdq"
        header = {h.strip().lower() for h in first.decode("utf-8", "replace").split(",")}
        if {"signal_type", "signal_str"} <= header:
            return "te_csv"
        return "csv"
    return "te"


def _short(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
