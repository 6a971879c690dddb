"""``Scanner``: what an upload handler calls.

One object per process (or per data directory) that owns the store, the matcher and the
settings, and turns an upload into a ``Verdict`` in milliseconds. It is safe to share between
threads, and many processes may open the same data directory: the store serialises writers and
every process maps the same index files.

The work per upload: read and sniff the bytes within limits, hash only what some configured list
can match (no PDQ when no list holds PDQ hashes), query every hash type in one batch (the eight
dihedral variants of an image, every frame of a video), apply the lists' policy, and record the
decision in the audit log.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ._config import load_config
from ._errors import ConfigError, MediaError, UploadScanError
from ._home import resolve_home
from ._matching import Lookup, QueryHash
from ._policy import decide
from ._verdict import Action, ScanErrorInfo, Verdict, audit_record, new_verdict_id
from .hashing._hash_file import ScanHashes, hash_for_scan
from .hashing._result import FrameHash
from .index._files import Matcher
from .media._intake import MediaSource
from .media._limits import DEFAULT_LIMITS, Limits
from .store._lists import HashList, ListKind, ListSettings
from .store._store import Store

STORE_FILENAME = "store.sqlite3"
INDEX_DIRNAME = "index"


class Scanner:
    """Scan uploads against the hash lists in one data directory.

    ``fail_mode`` is the action when an upload cannot be hashed or a list is stale (default
    REVIEW: nothing unknown is published unseen, nothing is blocked on a technicality).
    ``strict=True`` raises the ``UploadScanError`` instead. ``dihedral`` queries the mirrored,
    rotated and border-trimmed forms of an image too. ``audit`` records each decision in the
    store; ``audit_retention_days`` purges older decisions when the scanner opens.
    """

    def __init__(
        self,
        home: Path,
        *,
        limits: Limits = DEFAULT_LIMITS,
        fail_mode: Action | str = Action.REVIEW,
        strict: bool = False,
        dihedral: bool = True,
        audit: bool = True,
        match_images_in_video: bool = True,
        audit_retention_days: float | None = None,
    ) -> None:
        self._home = home
        self._limits = limits
        self._fail_mode = Action.parse(fail_mode)
        self._strict = strict
        self._dihedral = dihedral
        self._audit = audit
        self._match_images_in_video = match_images_in_video
        home.mkdir(parents=True, exist_ok=True)
        self._store = Store.open(home / STORE_FILENAME)
        self._matcher = Matcher(self._store, home / INDEX_DIRNAME)
        # Build missing or far-behind index files once, here, never inside a scan: searches
        # refresh themselves cheaply (base file + a small delta read from the store).
        self._matcher.refresh(build=True)
        self._lookup = Lookup(self._store, self._matcher)
        if audit_retention_days is not None:
            if audit_retention_days <= 0:
                raise ConfigError("audit_retention_days must be positive")
            self._store.purge_decisions(time.time() - audit_retention_days * 86400.0)
        self._closed = False
        self._lock = threading.Lock()
        # Opt-in published-content record (``scan(..., content_id=...)``), opened on first use;
        # batch workers swap in an in-memory sink and hand records to a single writer.
        self._published: Any = None

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None, **options: Any) -> Scanner:
        """Open (creating if needed) the data directory ``home``.

        Default: ``$UPLOADSCAN_HOME``, else the platform's user data directory. Options are
        the keyword arguments of ``Scanner``; they override the directory's ``config.json``.
        """
        path = resolve_home(home)
        return cls(path, **{**load_config(path), **options})

    # ------------------------------------------------------------------ properties

    @property
    def home(self) -> Path:
        return self._home

    @property
    def store(self) -> Store:
        return self._store

    @property
    def fail_mode(self) -> Action:
        return self._fail_mode

    # ------------------------------------------------------------------ scanning

    def scan(
        self,
        media: MediaSource,
        *,
        filename: str | None = None,
        strict: bool | None = None,
        content_id: str | None = None,
    ) -> Verdict:
        """Hash ``media`` (bytes, a path, or a binary file object) and match it.

        ``filename`` is informational only: the type is always sniffed from the bytes. On bad
        media the verdict carries the error and the fail-mode action, unless strict.
        ``content_id`` (opt-in) records the id with the hashes just computed in the
        published-content record, so lists synced later can be matched against it
        (``uploadscan retro``); PDQ is then computed even if no list holds PDQ yet.
        """
        self._check_open()
        if content_id is not None:
            from .store._published import check_content_id

            check_content_id(content_id)
        started = time.perf_counter()
        strict = self._strict if strict is None else strict
        needed = self._lookup.needed_types()
        try:
            hashed: ScanHashes | None = hash_for_scan(
                media,
                limits=self._limits,
                need_perceptual="pdq" in needed or content_id is not None,
                extra=[t for t in needed if t in _OPTIONAL_IMAGE_TYPES],
                dihedral=self._dihedral,
            )
            error: UploadScanError | None = None
        except MediaError as exc:
            if strict:
                raise
            hashed, error = None, exc
        queries = hashed.queries if hashed is not None else []
        verdict = self._finish(
            queries,
            started=started,
            hashes=hashed.result.hashes() if hashed is not None else {},
            media_type=hashed.result.media_type if hashed is not None else error_media(error),
            sha256=hashed.result.sha256 if hashed is not None else None,
            errors=[error] if error is not None else [],
            upload_frames=hashed.result.frames if hashed is not None else (),
        )
        if content_id is not None and hashed is not None:
            from .store._published import record_scan

            record_scan(self, content_id, hashed, verdict.created)
        return verdict

    def retro(self, **options: Any) -> Any:
        """Match recorded published content against entries added by recent syncs.

        See ``uploadscan.batch.retro`` for the options and the result.
        """
        self._check_open()
        from .batch._retro import retro

        return retro(self, **options)

    def lookup(self, hashes: Mapping[str, str | Sequence[str]]) -> Verdict:
        """Match precomputed hashes: ``{"pdq": "f8f8...", "md5": [...]}``.

        For split hasher/matcher deployments and clients in other languages. Invalid values
        raise ``InvalidHashError``; unknown types ``UnknownHashTypeError``.
        """
        self._check_open()
        started = time.perf_counter()
        queries = QueryHash.from_mapping(hashes)
        shown: dict[str, list[str]] = {}
        for q in queries:
            if q.variant == 0:
                shown.setdefault(q.hash_type, []).append(q.value)
        sha = shown.get("sha256", [None])[0]
        return self._finish(
            queries,
            started=started,
            hashes=shown,
            media_type=None,
            sha256=sha,
            errors=[],
            upload_frames=(),
        )

    def _finish(
        self,
        queries: Sequence[QueryHash],
        *,
        started: float,
        hashes: Mapping[str, Sequence[str]],
        media_type: str | None,
        sha256: str | None,
        errors: Sequence[UploadScanError],
        upload_frames: Sequence[FrameHash],
    ) -> Verdict:
        matches, lists = self._lookup.match_consistent(
            queries,
            upload_frames=upload_frames,
            match_images_in_video=self._match_images_in_video,
        )
        stale = [
            hl.name
            for hl in lists.values()
            if hl.settings.max_age_seconds is not None
            and (hl.last_sync is None or time.time() - hl.last_sync > hl.settings.max_age_seconds)
        ]
        decision = decide(
            matches, fail_mode=self._fail_mode, hashing_failed=bool(errors), stale_lists=stale
        )
        verdict = Verdict(
            action=decision.action,
            matches=tuple(matches),
            hashes={k: tuple(v) for k, v in hashes.items()},
            errors=tuple(ScanErrorInfo(type(e).__name__, str(e)) for e in errors),
            list_versions={name: hl.version for name, hl in lists.items()},
            reasons=decision.reasons,
            media_type=media_type,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
            id=new_verdict_id(),
            created=time.time(),
        )
        if self._audit:
            self._record(verdict, sha256)
        return verdict

    def _record(self, verdict: Verdict, sha256: str | None) -> None:
        self._store.record_decision(audit_record(verdict, sha256))

    # ------------------------------------------------------------------ lists

    def add_list(
        self,
        name: str,
        *,
        kind: ListKind | str = ListKind.BLOCK,
        source: str | None = None,
        settings: ListSettings | Mapping[str, Any] | None = None,
    ) -> HashList:
        """Configure a new list; ``sync()`` fills it from ``source``."""
        if isinstance(kind, str):
            try:
                kind = ListKind(kind.lower())
            except ValueError:
                raise ConfigError(
                    f"list kind must be block, review or allow, got {kind!r}"
                ) from None
        if settings is not None and not isinstance(settings, ListSettings):
            settings = ListSettings.from_dict(settings)
        return self._store.add_list(name, kind=kind, source=source, settings=settings)

    def remove_list(self, name: str) -> None:
        self._store.remove_list(name)

    def lists(self) -> list[HashList]:
        return self._store.lists()

    def sync(self, names: Sequence[str] | None = None, **options: Any) -> list[Any]:
        """Pull every configured list (or the named ones) from its source.

        ``options`` go to the sync runner: ``deadline_seconds`` (each list's whole sync) and
        ``on_progress(done, total)``.
        """
        self._check_open()
        from .sync import sync_lists

        results = sync_lists(self._store, names, **options)
        self._matcher.refresh()
        return list(results)

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError("this Scanner is closed")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()
                if hasattr(self._published, "close"):
                    self._published.close()

    def __enter__(self) -> Scanner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_OPTIONAL_IMAGE_TYPES = ("phash", "dhash", "ahash", "whash")


def error_media(error: UploadScanError | None) -> str | None:
    return getattr(error, "media_type", None)
