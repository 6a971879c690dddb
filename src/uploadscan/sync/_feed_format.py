"""The signed feed's wire format (``docs/feed.md``), shared by the client and the publisher.

Kept apart from both so that the one definition of a manifest and an entry line is what the
publisher writes and the client checks.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from .._errors import SyncError
from ..store._lists import EntryUpsert

__all__ = [
    "FORMAT",
    "MAX_LINE",
    "VERSION",
    "DeltaRef",
    "FileRef",
    "Manifest",
    "entry_line",
    "open_entries",
    "parse_manifest",
    "read_entry_lines",
]

FORMAT = "uploadscan-feed"
VERSION = 1
MAX_LINE = 1 << 20
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileRef:
    file: str
    sha256: str
    size: int
    entries: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "entries": self.entries,
        }


@dataclass(frozen=True)
class DeltaRef:
    from_sequence: int
    to_sequence: int
    ref: FileRef

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_sequence": self.from_sequence,
            "to_sequence": self.to_sequence,
            **self.ref.to_dict(),
        }


@dataclass(frozen=True)
class Manifest:
    list: str
    sequence: int
    published: int
    expires: int | None
    key_id: str
    snapshot: FileRef
    deltas: tuple[DeltaRef, ...]

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "list": self.list,
            "sequence": self.sequence,
            "published": self.published,
            "key_id": self.key_id,
            "snapshot": self.snapshot.to_dict(),
            "deltas": [d.to_dict() for d in self.deltas],
        }
        if self.expires is not None:
            data["expires"] = self.expires
        return (json.dumps(data, indent=1) + "\n").encode("utf-8")


def parse_manifest(data: bytes, where: str) -> Manifest:
    """Parse a manifest whose signature was already checked; ``SyncError`` if malformed."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SyncError(f"{where}: manifest is not valid JSON") from None
    if not isinstance(obj, dict):
        raise SyncError(f"{where}: manifest must be a JSON object")
    if obj.get("format") != FORMAT:
        raise SyncError(f"{where}: not an uploadscan feed manifest (format {obj.get('format')!r})")
    if obj.get("version") != VERSION:
        raise SyncError(
            f"{where}: feed format version {obj.get('version')!r} is not supported "
            f"(this uploadscan reads version {VERSION}); upgrade uploadscan"
        )
    name = obj.get("list")
    if not isinstance(name, str) or not name:
        raise SyncError(f"{where}: manifest 'list' must be a non-empty string")
    expires = obj.get("expires")
    deltas = obj.get("deltas", [])
    if not isinstance(deltas, list):
        raise SyncError(f"{where}: manifest 'deltas' must be a list")
    return Manifest(
        list=name,
        sequence=_int(obj, "sequence", where, minimum=1),
        published=_int(obj, "published", where),
        expires=None if expires is None else _int(obj, "expires", where),
        key_id=str(obj.get("key_id", "")),
        snapshot=_file_ref(obj.get("snapshot"), where),
        deltas=tuple(_delta_ref(d, where) for d in deltas),
    )


def _int(obj: Mapping[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SyncError(f"{where}: manifest {key!r} must be an integer >= {minimum}")
    return value


def _file_ref(obj: object, where: str) -> FileRef:
    if not isinstance(obj, dict):
        raise SyncError(f"{where}: manifest file entry must be an object")
    name = obj.get("file")
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or ".." in name:
        raise SyncError(f"{where}: manifest names an unsafe file {str(name)[:80]!r}")
    digest = obj.get("sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise SyncError(f"{where}: manifest sha256 of {name} must be 64 lowercase hex")
    return FileRef(name, digest, _int(obj, "size", where), _int(obj, "entries", where))


def _delta_ref(obj: object, where: str) -> DeltaRef:
    ref = _file_ref(obj, where)
    assert isinstance(obj, dict)
    start = _int(obj, "from_sequence", where)
    end = _int(obj, "to_sequence", where, minimum=1)
    if end <= start:
        raise SyncError(f"{where}: delta {ref.file} goes backwards ({start} -> {end})")
    return DeltaRef(start, end, ref)


def entry_line(entry: EntryUpsert | None, delete: tuple[str, str] | None = None) -> str:
    """One entry line (no newline): an upsert, or a delete of ``(hash_type, value)``."""
    if delete is not None:
        return json.dumps(
            {"op": "delete", "hash_type": delete[0], "value": delete[1]}, separators=(",", ":")
        )
    assert entry is not None
    data: dict[str, Any] = {"hash_type": entry.hash_type, "value": entry.value}
    if entry.labels:
        data["labels"] = list(entry.labels)
    if entry.external_id is not None:
        data["id"] = entry.external_id
    if entry.extra is not None:
        data["extra"] = entry.extra
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def open_entries(f: IO[bytes]) -> IO[bytes]:
    """The entry stream of an entry file, decompressing gzip (told by its magic bytes)."""
    f.seek(0)
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def read_entry_lines(
    stream: IO[bytes], where: str
) -> Iterator[tuple[int, str, EntryUpsert | tuple[str, str]]]:
    """``(line number, op, upsert or delete key)`` for each line; ``SyncError`` naming the
    line for anything malformed. Values are passed through unvalidated (the store checks)."""
    lineno = 0
    try:
        while True:
            raw = stream.readline(MAX_LINE + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE:
                raise SyncError(f"{where}, line {lineno}: line longer than {MAX_LINE} bytes")
            if not raw.strip():
                continue
            yield lineno, *_parse_line(raw, where, lineno)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise SyncError(f"{where}, line {lineno + 1}: cannot decompress: {exc}") from None


def _parse_line(raw: bytes, where: str, lineno: int) -> tuple[str, EntryUpsert | tuple[str, str]]:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SyncError(f"{where}, line {lineno}: not a JSON object") from None
    if not isinstance(obj, dict):
        raise SyncError(f"{where}, line {lineno}: not a JSON object")
    op = obj.get("op", "upsert")
    hash_type, value = obj.get("hash_type"), obj.get("value")
    if not isinstance(hash_type, str) or not isinstance(value, str):
        raise SyncError(f"{where}, line {lineno}: 'hash_type' and 'value' must be strings")
    if op == "delete":
        return "delete", (hash_type, value)
    if op != "upsert":
        raise SyncError(f"{where}, line {lineno}: unknown op {str(op)[:40]!r}")
    labels = obj.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise SyncError(f"{where}, line {lineno}: 'labels' must be a list of strings")
    external_id = obj.get("id")
    if external_id is not None and not isinstance(external_id, str | int):
        raise SyncError(f"{where}, line {lineno}: 'id' must be a string")
    extra = obj.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise SyncError(f"{where}, line {lineno}: 'extra' must be an object")
    return "upsert", EntryUpsert(
        hash_type,
        value,
        tuple(sorted(set(labels))),
        None if external_id is None else str(external_id),
        extra,
    )
