"""Client for the signed uploadscan feed (``docs/feed.md``).

The feed's files can sit on any CDN, so the client trusts nothing it downloads until it has
checked it against the manifest, and nothing in the manifest until the pinned Ed25519 key has
verified its exact bytes. Every file a sync needs is downloaded to a temporary file and
checked (size, SHA-256, line count) before the first batch is yielded, so a tampered,
truncated or oversized file anywhere in a delta chain means nothing is applied at all.

The checkpoint is a small JSON object: the applied ``sequence``, the feed's ``list`` name
(pinned on first sync) and the manifest's ``etag`` for a conditional GET next time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .._errors import (
    ConfigError,
    FeedVerificationError,
    InvalidHashError,
    SyncError,
    TruncatedDownloadError,
    UnknownHashTypeError,
)
from ..store._lists import EntryUpsert
from ._base import FetchBatch
from ._entry_builder import EntryBuilder
from ._feed_format import (
    DeltaRef,
    FileRef,
    Manifest,
    open_entries,
    parse_manifest,
    read_entry_lines,
)
from ._http import HttpOptions, check_url, describe_url, http_get
from ._keys import key_id, load_public_key, load_public_keys_file, verify_any

__all__ = ["FeedSource"]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
_MAX_MANIFEST = 1 << 20
_MAX_SIGNATURE = 1 << 10
_MAX_ENTRY_FILE = 1 << 34
_OPTIONS = ("key", "key_file", "list")


class FeedSource:
    """A signed feed at ``base_url`` (a directory URL), verified with ``keys``."""

    def __init__(
        self,
        base_url: str,
        keys: list[Ed25519PublicKey],
        *,
        expected_list: str | None = None,
        http_options: HttpOptions | None = None,
    ) -> None:
        if not keys:
            raise ConfigError(
                f"feed {describe_url(base_url)}: no public key pinned; add ?key=<base64 public "
                "key> or ?key_file=<path> to the source"
            )
        if base_url.endswith("/" + MANIFEST):
            base_url = base_url[: -len(MANIFEST)]
        if not base_url.endswith("/"):
            base_url += "/"
        self.base_url = base_url
        self.keys = keys
        self.expected_list = expected_list
        self.http = http_options or HttpOptions()
        check_url(base_url, self.http)

    @classmethod
    def from_options(
        cls, base_url: str, options: Mapping[str, str], http_options: HttpOptions
    ) -> FeedSource:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown feed option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}"
            )
        keys = [load_public_key(k) for k in options.get("key", "").split("\n") if k.strip()]
        if options.get("key_file"):
            keys += load_public_keys_file(Path(options["key_file"]).expanduser())
        return cls(
            base_url, keys, expected_list=options.get("list") or None, http_options=http_options
        )

    @property
    def description(self) -> str:
        return f"feed {describe_url(self.base_url)}"

    # ------------------------------------------------------------------ fetching

    def fetch(self, checkpoint: str | None) -> Iterator[FetchBatch]:
        state = _parse_checkpoint(checkpoint)
        etag = state.get("etag") if state else None
        if state and self.expected_list is not None and state.get("list") != self.expected_list:
            etag = None  # the pin changed: look at the manifest again, not just its ETag
        fetched = self._verified_manifest(etag if isinstance(etag, str) else None)
        if fetched is None:
            return  # 304 Not Modified
        manifest, new_etag = fetched
        applied = state.get("sequence") if state else None
        stored_list = state.get("list") if state else None
        pinned = self.expected_list or (stored_list if isinstance(stored_list, str) else None)
        self._check(manifest, applied if isinstance(applied, int) else None, pinned)

        def checkpoint_at(sequence: int, last: bool) -> str:
            data: dict[str, object] = {"sequence": sequence, "list": manifest.list}
            if last and new_etag:
                data["etag"] = new_etag
            return json.dumps(data, sort_keys=True, separators=(",", ":"))

        if isinstance(applied, int) and applied == manifest.sequence:
            if new_etag != etag:
                yield FetchBatch(checkpoint=checkpoint_at(applied, True))
            return
        chain = _delta_chain(manifest, applied) if isinstance(applied, int) else None
        refs = [d.ref for d in chain] if chain else [manifest.snapshot]
        files: list[IO[bytes]] = []
        try:
            for ref in refs:
                files.append(self._download(ref))
            if chain:
                for i, (delta, f) in enumerate(zip(chain, files, strict=True)):
                    last = i == len(chain) - 1
                    batch = self._batch(
                        delta.ref, f, checkpoint_at(delta.to_sequence, last), replace=False
                    )
                    batch.pending = sum(d.ref.entries for d in chain[i:])
                    yield batch
            else:
                final = checkpoint_at(manifest.sequence, True)
                batch = self._batch(manifest.snapshot, files[0], final, replace=True)
                batch.pending = manifest.snapshot.entries
                yield batch
        finally:
            for f in files:
                f.close()

    def _verified_manifest(self, etag: str | None) -> tuple[Manifest, str | None] | None:
        where = describe_url(self.base_url + MANIFEST)
        for attempt in (1, 2):
            response = http_get(
                self.base_url + MANIFEST,
                options=self.http.with_max_bytes(_MAX_MANIFEST),
                etag=etag if attempt == 1 else None,
            )
            if response.status == 304:
                return None
            signature = http_get(
                self.base_url + SIGNATURE, options=self.http.with_max_bytes(_MAX_SIGNATURE)
            ).body
            try:
                raw_signature = base64.b64decode(signature.strip(), validate=True)
            except (binascii.Error, ValueError):
                raw_signature = b""
            if len(raw_signature) == 64 and verify_any(self.keys, raw_signature, response.body):
                return parse_manifest(response.body, where), response.etag
        ids = ", ".join(key_id(k) for k in self.keys)
        raise FeedVerificationError(
            f"{where}: signature does not verify with the pinned key(s) ({ids}); the feed was "
            "tampered with or is signed by another key. Nothing was applied."
        )

    def _check(self, manifest: Manifest, applied: int | None, pinned: str | None) -> None:
        where = describe_url(self.base_url + MANIFEST)
        if pinned is not None and manifest.list != pinned:
            raise FeedVerificationError(
                f"{where}: manifest is for list {manifest.list!r}, expected {pinned!r}"
            )
        if applied is not None and manifest.sequence < applied:
            raise FeedVerificationError(
                f"{where}: sequence went back from {applied} to {manifest.sequence} (rollback); "
                "nothing was applied"
            )
        if manifest.expires is not None and manifest.expires < time.time():
            raise FeedVerificationError(
                f"{where}: manifest expired at {manifest.expires} (unix time); the publisher "
                "has not re-signed it, or an old copy is being served"
            )

    def _download(self, ref: FileRef) -> IO[bytes]:
        url = self.base_url + urllib.parse.quote(ref.file)
        where = describe_url(url)
        if ref.size > _MAX_ENTRY_FILE:
            raise FeedVerificationError(f"{where}: declared size {ref.size} is implausible")
        sink = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller on success
        try:
            try:
                response = http_get(url, options=self.http.with_max_bytes(ref.size), sink=sink)
            except TruncatedDownloadError as exc:
                raise FeedVerificationError(f"{exc}; nothing was applied") from None
            except SyncError as exc:
                if "exceeds the limit" in str(exc):
                    raise FeedVerificationError(
                        f"{where}: larger than the {ref.size} bytes the manifest declares"
                    ) from None
                raise
            if response.size != ref.size:
                raise FeedVerificationError(
                    f"{where}: got {response.size} bytes, the manifest declares {ref.size}"
                )
            sink.seek(0)
            sha = hashlib.sha256()
            while chunk := sink.read(1 << 20):
                sha.update(chunk)
            if sha.hexdigest() != ref.sha256:
                raise FeedVerificationError(
                    f"{where}: SHA-256 differs from the signed manifest; nothing was applied"
                )
            lines = 0
            stream = open_entries(sink)
            try:
                while True:
                    line = stream.readline(1 << 21)
                    if not line:
                        break
                    lines += line.endswith(b"\n") or bool(line.strip())
                    if lines > ref.entries:
                        break
            except (OSError, EOFError) as exc:
                raise SyncError(f"{where}: cannot decompress: {exc}") from None
            if lines != ref.entries:
                raise FeedVerificationError(
                    f"{where}: holds {'more than ' if lines > ref.entries else ''}{lines} lines, "
                    f"the manifest declares {ref.entries}"
                )
            return sink
        except BaseException:
            sink.close()
            raise

    def _batch(self, ref: FileRef, f: IO[bytes], checkpoint: str, *, replace: bool) -> FetchBatch:
        where = describe_url(self.base_url + ref.file)
        skipped: Counter[str] = Counter()
        builder = EntryBuilder(skipped)
        deletes: list[tuple[str, str]] = []
        if not replace:
            for lineno, op, item in read_entry_lines(open_entries(f), where):
                if op == "delete":
                    assert isinstance(item, tuple)
                    deletes.append(_checked_delete(builder, item, where, lineno))
        return FetchBatch(
            upserts=_upserts(f, where, builder, allow_deletes=not replace),
            deletes=deletes,
            checkpoint=checkpoint,
            replace=replace,
            skipped=skipped,
        )


def _upserts(
    f: IO[bytes], where: str, builder: EntryBuilder, *, allow_deletes: bool
) -> Iterator[EntryUpsert]:
    for lineno, op, item in read_entry_lines(open_entries(f), where):
        if op == "delete":
            if not allow_deletes:
                raise SyncError(f"{where}, line {lineno}: a snapshot cannot delete entries")
            continue
        assert isinstance(item, EntryUpsert)
        try:
            canonical = builder.canonical(item.hash_type, item.value)
        except (InvalidHashError, UnknownHashTypeError) as exc:
            raise SyncError(f"{where}, line {lineno}: {exc}") from None
        if canonical is not None:
            yield EntryUpsert(item.hash_type, canonical, item.labels, item.external_id, item.extra)


def _checked_delete(
    builder: EntryBuilder, item: tuple[str, str], where: str, lineno: int
) -> tuple[str, str]:
    try:
        return builder.delete_key(*item)
    except (InvalidHashError, UnknownHashTypeError) as exc:
        raise SyncError(f"{where}, line {lineno}: {exc}") from None


def _delta_chain(manifest: Manifest, applied: int) -> list[DeltaRef] | None:
    by_start = {d.from_sequence: d for d in manifest.deltas}
    chain = []
    at = applied
    while at < manifest.sequence:
        delta = by_start.get(at)
        if delta is None:
            return None
        chain.append(delta)
        at = delta.to_sequence
    return chain if at == manifest.sequence and chain else None


def _parse_checkpoint(checkpoint: str | None) -> dict[str, object] | None:
    if not checkpoint:
        return None
    try:
        data = json.loads(checkpoint)
    except json.JSONDecodeError:
        return None  # not ours (the list had another source): start from the snapshot
    return data if isinstance(data, dict) else None
