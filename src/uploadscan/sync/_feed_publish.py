"""Publishing a list as a signed feed (``docs/feed.md``): snapshot, delta, signed manifest.

The publisher reads any list file uploadscan can sync from, so a platform or NGO that keeps
its list as a python-threatexchange file or a CSV can serve it to others without new tooling.
Each run is one new sequence. Files are written under temporary names and renamed into place
in an order that keeps the feed readable throughout: entry files first (new names, nothing
refers to them yet), then the signature, then the manifest, and only then are files that
fell out of the window removed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .._errors import ConfigError, SyncError
from ..store._lists import EntryUpsert
from ._feed import MANIFEST, SIGNATURE
from ._feed_format import (
    DeltaRef,
    FileRef,
    Manifest,
    entry_line,
    open_entries,
    parse_manifest,
    read_entry_lines,
)
from ._files import FileSource
from ._keys import key_id, load_private_key

__all__ = ["PublishResult", "publish_feed"]

DEFAULT_KEEP_DELTAS = 30
DEFAULT_TTL_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class PublishResult:
    """What one ``publish_feed`` wrote."""

    sequence: int
    entries: int
    added: int
    removed: int
    changed: int
    manifest: Path
    snapshot: Path
    delta: Path | None


def publish_feed(
    list_file: Path | str,
    feed_dir: Path | str,
    key_path: Path | str,
    *,
    list_name: str,
    sequence: int | None = None,
    keep_deltas: int = DEFAULT_KEEP_DELTAS,
    ttl_seconds: int | None = DEFAULT_TTL_SECONDS,
    source_options: dict[str, str] | None = None,
) -> PublishResult:
    """Publish the next sequence of ``list_file`` into ``feed_dir``, signed with the private
    key at ``key_path``. ``sequence`` overrides the next number (it must exceed the last).
    """
    if not list_name or not isinstance(list_name, str):
        raise ConfigError("list_name must be a non-empty string")
    if keep_deltas < 0:
        raise ConfigError("keep_deltas must be >= 0")
    if sequence is not None and (isinstance(sequence, bool) or sequence < 1):
        raise ConfigError(f"sequence must be an integer >= 1, got {sequence!r}")
    feed = Path(feed_dir)
    key = load_private_key(key_path)
    try:
        return _publish(
            Path(list_file),
            feed,
            key,
            list_name,
            sequence,
            keep_deltas,
            ttl_seconds,
            source_options or {},
        )
    except OSError as exc:
        where = exc.filename or feed
        raise SyncError(f"cannot publish to {feed}: {where}: {exc.strerror or exc}") from None


def _publish(
    list_file: Path,
    feed: Path,
    key: Ed25519PrivateKey,
    list_name: str,
    sequence: int | None,
    keep_deltas: int,
    ttl_seconds: int | None,
    source_options: dict[str, str],
) -> PublishResult:
    feed.mkdir(parents=True, exist_ok=True)
    previous = _previous_manifest(feed)
    if previous is not None and previous.list != list_name:
        raise ConfigError(
            f"{feed} publishes list {previous.list!r}, not {list_name!r}; use another directory"
        )
    last = previous.sequence if previous else 0
    if sequence is None:
        sequence = last + 1
    elif sequence <= last:
        raise ConfigError(f"sequence must be above the last published one ({last}), got {sequence}")

    current = _read_list(list_file, source_options)
    old = _read_snapshot(feed, previous) if previous else {}
    lines = sorted(current.values())
    snapshot = _write_entries(feed, f"snapshot-{sequence}.jsonl.gz", lines)

    deltas: list[DeltaRef] = []
    delta_path: Path | None = None
    added = removed = changed = 0
    if previous is not None:
        delta_lines = []
        for k, line in current.items():
            before = old.get(k)
            if before != line:
                delta_lines.append(line)
                added += before is None
                changed += before is not None
        for k in old.keys() - current.keys():
            delta_lines.append(entry_line(None, k))
            removed += 1
        delta_lines.sort()
        name = f"delta-{previous.sequence}-{sequence}.jsonl.gz"
        ref = _write_entries(feed, name, delta_lines)
        delta_path = feed / name
        deltas = [*previous.deltas, DeltaRef(previous.sequence, sequence, ref)]
        deltas = deltas[-keep_deltas:] if keep_deltas else []
    else:
        added = len(current)

    now = int(time.time())
    public = key.public_key()
    manifest = Manifest(
        list=list_name,
        sequence=sequence,
        published=now,
        expires=None if ttl_seconds is None else now + ttl_seconds,
        key_id=key_id(public),
        snapshot=snapshot,
        deltas=tuple(deltas),
    )
    body = manifest.to_bytes()
    signature = base64.b64encode(key.sign(body)).decode("ascii") + "\n"
    _atomic_write(feed / SIGNATURE, signature.encode("ascii"))
    _atomic_write(feed / MANIFEST, body)
    _prune(feed, manifest, previous)
    return PublishResult(
        sequence=sequence,
        entries=len(current),
        added=added,
        removed=removed,
        changed=changed,
        manifest=feed / MANIFEST,
        snapshot=feed / snapshot.file,
        delta=delta_path,
    )


def _read_list(path: Path, options: dict[str, str]) -> dict[tuple[str, str], str]:
    """Every entry of the list file as its feed line, keyed like the store keys entries."""
    out: dict[tuple[str, str], str] = {}
    for batch in FileSource(path, options).fetch(None):
        for entry in batch.upserts:
            out[entry.hash_type, entry.value] = entry_line(entry)
    return out


def _previous_manifest(feed: Path) -> Manifest | None:
    path = feed / MANIFEST
    if not path.exists():
        return None
    return parse_manifest(path.read_bytes(), str(path))


def _read_snapshot(feed: Path, manifest: Manifest) -> dict[tuple[str, str], str]:
    path = feed / manifest.snapshot.file
    out: dict[tuple[str, str], str] = {}
    try:
        f = path.open("rb")
    except OSError as exc:
        raise SyncError(f"cannot read the previous snapshot {path}: {exc.strerror}") from None
    with f:
        for _, op, item in read_entry_lines(open_entries(f), str(path)):
            if isinstance(item, EntryUpsert) and op == "upsert":
                out[item.hash_type, item.value] = entry_line(item)
    return out


def _write_entries(feed: Path, name: str, lines: Iterable[str]) -> FileRef:
    path = feed / name
    tmp = feed / f".{name}.tmp"
    count = 0
    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for line in lines:
            gz.write(line.encode("utf-8") + b"\n")
            count += 1
    data = tmp.read_bytes()
    _fsync_replace(tmp, path)
    return FileRef(name, hashlib.sha256(data).hexdigest(), len(data), count)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    _fsync_replace(tmp, path)


def _fsync_replace(tmp: Path, path: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _prune(feed: Path, manifest: Manifest, previous: Manifest | None) -> None:
    """Remove entry files nothing refers to, keeping the previous snapshot for clients that
    are mid-download."""
    keep = {manifest.snapshot.file, *(d.ref.file for d in manifest.deltas)}
    if previous is not None:
        keep.add(previous.snapshot.file)
    for path in feed.iterdir():
        name = path.name
        if name in keep or not name.endswith((".jsonl.gz", ".jsonl")):
            continue
        if name.startswith(("snapshot-", "delta-")):
            path.unlink(missing_ok=True)
