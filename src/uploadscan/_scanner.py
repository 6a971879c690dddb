"""``Scanner``: what an upload handler calls.

One object per process (or per data directory) that owns the store, the index files and the
settings, and turns an upload into a ``Verdict`` in milliseconds. It is safe to share between
threads, and many processes may open the same data directory: the store serialises writers and
every process maps the same index files.

The work per upload: read the bytes within limits and digest them as they arrive, hash only
what some configured list can match (no PDQ when no list holds PDQ hashes), query every hash
type in one batch (the extra forms of an image, every frame of a video), then ``_judge`` makes
the verdict from the matches and the lists' state, and the decision is recorded.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from ._action import Action
from ._errors import ConfigError, UploadScanError
from ._home import resolve_home
from ._judge import decision_record, judge
from ._matching import Matcher, queries_from_mapping
from ._own_lists import MediaEntry, entry_keys, media_upserts, own_list, own_list_types
from ._review import PlannedEntries, ReviewDecision, record_review
from ._settings import ScannerSettings
from ._verdict import Verdict
from .hashing._hash_file import UploadHashes, computable, hash_upload
from .hashing._protocol import HashType
from .hashing._registry import registry
from .hashing._result import FrameHash, Query
from .index._files import IndexFiles
from .media._intake import MediaSource
from .store._audit import DecisionOrigin, DecisionRecord
from .store._lists import HashList, ListKind, ListSettings, SyncResult
from .store._published import PUBLISHED_FILENAME, PublishedItem, PublishedRecord, PublishedSink
from .store._published import check_content_id as _check_content_id
from .store._store import Store

STORE_FILENAME = "store.sqlite3"
INDEX_DIRNAME = "index"


class Scanner:
    """Scan uploads against the hash lists in one data directory.

    ``settings`` (``ScannerSettings``; keyword options override single fields) decide the fail
    mode — the action when an upload cannot be hashed or a block or review list is not current
    (default REVIEW: nothing unknown is published unseen, nothing is blocked on a technicality)
    — the action for bytes that are not media, strictness, which image forms are queried, the
    audit log and the limits. ``published`` is where ``scan(..., content_id=...)`` records
    what was published (default: the data directory's record, opened on first use).
    """

    def __init__(
        self,
        home: Path,
        settings: ScannerSettings | None = None,
        *,
        published: PublishedSink | None = None,
        **options: Any,
    ) -> None:
        settings = settings or ScannerSettings()
        self._settings = settings.replace(**options) if options else settings
        self._home = home
        home.mkdir(parents=True, exist_ok=True)
        self._store = Store.open(home / STORE_FILENAME)
        self._index = IndexFiles(self._store, home / INDEX_DIRNAME)
        # Build missing or far-behind index files once, here, never inside a scan: searches
        # refresh themselves cheaply (base file + a small delta read from the store).
        self._index.refresh(build=True)
        self._matcher = Matcher(self._store, self._index)
        retention = self._settings.audit_retention_days
        if retention is not None:
            self._store.purge_decisions(time.time() - retention * 86400.0)
        self._closed = False
        self._lock = threading.Lock()
        self._published = published
        self._types: tuple[int, frozenset[str], tuple[HashType, ...]] | None = None

    @classmethod
    def open(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        settings: ScannerSettings | None = None,
        published: PublishedSink | None = None,
        **options: Any,
    ) -> Scanner:
        """Open (creating if needed) the data directory ``home``.

        Default: ``$UPLOADSCAN_HOME``, else the platform's user data directory. The settings
        are the directory's ``config.json`` (or ``settings``), with ``options`` (the fields of
        ``ScannerSettings``: ``fail_mode="allow"``, ``strict=True``...) overriding them.
        """
        path = resolve_home(home)
        base = settings if settings is not None else ScannerSettings.load(path)
        return cls(path, base, published=published, **options)

    # ------------------------------------------------------------------ properties

    @property
    def home(self) -> Path:
        return self._home

    @property
    def store(self) -> Store:
        return self._store

    @property
    def settings(self) -> ScannerSettings:
        return self._settings

    @property
    def fail_mode(self) -> Action:
        return self._settings.fail_mode

    # ------------------------------------------------------------------ scanning

    def scan(
        self,
        media: MediaSource,
        *,
        filename: str | None = None,
        strict: bool | None = None,
        content_id: str | None = None,
        non_media: Action | str | None = None,
    ) -> Verdict:
        """Hash ``media`` (bytes, a path, or a binary file object) and match it.

        The type is always sniffed from the bytes; ``filename`` only names the upload in error
        messages. MD5 and SHA-256 are matched for every upload, media or not. When media
        cannot be hashed the verdict carries the error and the fail-mode action (unless
        ``strict``); an exact block match blocks all the same. ``UploadReadError`` (a path
        that cannot be read) is always raised: it is the caller's problem, not the upload's.
        ``content_id`` (opt-in) records the id with the hashes just computed in the
        published-content record, so lists synced later can be matched against it
        (``uploadscan retro``); PDQ is then computed even if no list holds PDQ yet.
        ``non_media`` overrides the settings' action for bytes that are not media, for callers
        that know the upload is media (pict-rs has already decoded it): they pass the fail mode.
        """
        self._check_open()
        if content_id is not None:
            _check_content_id(content_id)
        started = time.perf_counter()
        strict = self._settings.strict if strict is None else strict
        hashed = hash_upload(
            media,
            limits=self._settings.limits,
            types=self._wanted_types(record=content_id is not None),
            variants=self._settings.dihedral,
            decided=self._decided_without_second_stage,
        )
        if hashed.error is not None and strict:
            raise hashed.error
        not_media_action = (
            self._settings.non_media if non_media is None else Action.parse(non_media)
        )
        verdict = _judge_upload(self, hashed, started, filename, not_media_action)
        if content_id is not None:
            self._published_sink().add(PublishedItem.from_scan(content_id, hashed, verdict.created))
        return verdict

    def lookup(
        self,
        hashes: Mapping[str, str | Sequence[str]],
        *,
        lists: Iterable[str] | None = None,
    ) -> Verdict:
        """Match precomputed hashes: ``{"pdq": "f8f8...", "md5": [...]}``.

        For split hasher/matcher deployments and clients in other languages. ``lists``
        restricts the answer to those lists (unknown names raise ``ListNotFoundError``).
        Invalid values raise ``InvalidHashError``; unknown types ``UnknownHashTypeError``.
        """
        self._check_open()
        started = time.perf_counter()
        queries = queries_from_mapping(hashes)
        only = None
        if lists is not None:
            only = frozenset(lists)
            for name in only:
                self._store.get_list(name)  # ListNotFoundError for a name that is not there
        return judge_queries(
            self, queries, started=started, only_lists=only, origin=DecisionOrigin.LOOKUP
        )

    def _wanted_types(self, *, record: bool) -> tuple[HashType, ...]:
        """The computable types some list holds (plus PDQ when the scan is recorded)."""
        needed = self._matcher.needed_types()
        if record:
            needed = needed | _RECORDED_TYPES
        cached = self._types
        if cached is None or cached[0] != registry.generation or cached[1] != needed:
            types = tuple(t for t in registry if (t.name in needed or t.is_exact) and computable(t))
            cached = self._types = (registry.generation, needed, types)
        return cached[2]

    def _decided_without_second_stage(self, queries: Sequence[Query]) -> bool:
        """Whether the upload's verdict is settled before the costly types are computed.

        PDQ stays the first stage: an upload that an exact or PDQ match already blocks needs
        no local features (tens of milliseconds). An allowlist match settles it too (it
        overrides every other match). A block is only final when no allowlist holds
        second-stage values, which could still override it.
        """
        matches, lists = self._matcher.match_consistent(queries)
        if any(m.list_kind is ListKind.ALLOW for m in matches):
            return True
        if not any(m.action is Action.BLOCK for m in matches):
            return False
        late = {t.name for t in registry if t.second_stage}
        return not any(
            hl.kind is ListKind.ALLOW and any(hl.counts_by_type.get(t, 0) for t in late)
            for hl in lists.values()
        )

    def _published_sink(self) -> PublishedSink:
        with self._lock:
            if self._published is None:
                self._published = PublishedRecord.open(self._home / PUBLISHED_FILENAME)
            return self._published

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
        if settings is not None and not isinstance(settings, ListSettings):
            settings = ListSettings.from_dict(settings)
        return self._store.add_list(
            name, kind=ListKind.parse(kind), source=source, settings=settings
        )

    def remove_list(self, name: str) -> None:
        self._store.remove_list(name)

    # ------------------------------------------------------------------ own lists

    def add_media(
        self,
        list_name: str,
        media: MediaSource,
        *,
        labels: Sequence[str] = (),
        entry_id: str | None = None,
    ) -> MediaEntry:
        """Put everything that can be computed from ``media`` on the platform's own list
        ``list_name`` (source ``local:``): MD5, SHA-256, PDQ, a video's PDQ frames and TMK, and
        the crop-robust types meant for own lists. The media itself is never stored.

        ``entry_id`` (default: the file's SHA-256) names the entry in matches and in
        ``remove_media``; ``labels`` go on every value. Media that cannot be hashed raises its
        ``MediaError``: a list must not hold a partial entry unknowingly.
        """
        self._check_open()
        own_list(self._store, list_name)
        hashed = hash_upload(
            media, limits=self._settings.limits, types=own_list_types(), variants=False
        )
        result = hashed.result
        if hashed.error is not None:
            raise hashed.error
        name = entry_id if entry_id is not None else result.sha256
        if not isinstance(name, str) or not name.strip() or len(name) > 256 or "#" in name:
            raise ConfigError(f"entry id must be 1-256 characters without '#', got {name!r}")
        upserts, skipped = media_upserts(hashed, entry_id=name, labels=labels)
        self._store.apply_batch(list_name, upserts, mark_synced=False)
        counts: dict[str, int] = {}
        for upsert in upserts:
            counts[upsert.hash_type] = counts.get(upsert.hash_type, 0) + 1
        return MediaEntry(list_name, name, result.media_type, counts, tuple(skipped))

    def remove_media(self, list_name: str, entry_id: str) -> int:
        """Remove every value of the entry ``entry_id`` from the own list ``list_name``;
        returns how many went (``ConfigError`` when there was none)."""
        self._check_open()
        own_list(self._store, list_name)
        keys = entry_keys(self._store, list_name, entry_id)
        if not keys:
            raise ConfigError(f"list {list_name!r} has no entry {entry_id!r}")
        return self._store.apply_batch(list_name, [], keys, mark_synced=False).removed

    def review(
        self,
        verdict_id: str,
        decision: str,
        *,
        note: str | None = None,
        allowlist: str | None = None,
        add_to: str | None = None,
        media: MediaSource | None = None,
        labels: Sequence[str] = (),
    ) -> DecisionRecord:
        """Record a moderator's ``confirm`` or ``overturn`` of a REVIEW verdict.

        ``allowlist`` (overturn): put the upload's hashes on that allow list. ``add_to`` with
        ``media`` (confirm): put everything computed from the upload — the file the caller
        still holds, checked against the verdict's SHA-256 — on that own block or review list
        in the same step. Changing a decision undoes what the previous one added.
        """
        self._check_open()
        plan: PlannedEntries | None = None
        if add_to is not None:
            if media is None:
                raise ConfigError("add_to needs the upload's media (the store never kept it)")
            if ReviewDecision.parse(decision) is not ReviewDecision.CONFIRM:
                raise ConfigError("only a confirmed verdict's media can go on a list")
            hash_list = own_list(self._store, add_to)
            if hash_list.kind is ListKind.ALLOW:
                raise ConfigError(f"list {add_to!r} is an allow list; confirm adds to block lists")
            hashed = hash_upload(
                media, limits=self._settings.limits, types=own_list_types(), variants=False
            )
            expected = self._store.decision(verdict_id).sha256
            if expected is not None and hashed.result.digest("sha256") != expected:
                raise ConfigError(
                    f"that file is not the upload of verdict {verdict_id} (its SHA-256 differs)"
                )
            upserts, _ = media_upserts(
                hashed, entry_id=hashed.result.sha256, labels=("confirmed", *labels)
            )
            plan = PlannedEntries(add_to, hash_list.kind, tuple(upserts))
        elif media is not None:
            raise ConfigError("media is only needed with add_to")
        return record_review(
            self._store, verdict_id, decision, note=note, allowlist=allowlist, add=plan
        )

    def lists(self) -> list[HashList]:
        return self._store.lists()

    def sync(
        self,
        names: Sequence[str] | None = None,
        *,
        deadline_seconds: float | None = None,
        on_progress: Callable[[int, int | None], None] | None = None,
        on_index_progress: Callable[[int, int], None] | None = None,
    ) -> list[SyncResult]:
        """Pull every configured list (or the named ones) from its source, concurrently; one
        result per list, failures (and lists over their whole-sync deadline, ``None``: the
        default) included rather than raised. ``on_progress(done, total)`` counts records;
        ``on_index_progress(done, total)`` counts entries indexed when the sync leaves an
        index to (re)build, as the first sync of a large list does."""
        self._check_open()
        if _list_syncer is None:
            raise ConfigError("list syncing is not wired in; import uploadscan, not its modules")
        results = _list_syncer(
            self._store, names, deadline_seconds=deadline_seconds, on_progress=on_progress
        )
        self._index.refresh(on_progress=on_index_progress)
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
                if self._published is not None:
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


#: What a recorded scan keeps for retroactive matching (see ``store._published``).
_RECORDED_TYPES = frozenset({"pdq"})


def _shown_hashes(hashes: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The hashes a verdict echoes and the decision log keeps: not the values of types that
    stay on the machine (``HashType.shareable`` False: local descriptors, tens of KB each,
    revealing more of a picture than a hash). Verdicts go back over HTTP and the decision
    log feeds reports to publishers; the matches still name such entries in short form."""
    return {name: list(v) for name, v in hashes.items() if registry.get(name).shareable}


def _judge_upload(
    scanner: Scanner,
    hashed: UploadHashes,
    started: float,
    filename: str | None,
    non_media: Action,
) -> Verdict:
    settings = scanner._settings
    result = hashed.result
    matches, lists = scanner._matcher.match_consistent(
        hashed.queries,
        upload_frames=result.frames,
        match_images_in_video=settings.match_images_in_video,
    )
    errors: list[UploadScanError] = [hashed.error] if hashed.error is not None else []
    verdict = judge(
        matches,
        lists,
        hashes=_shown_hashes(result.hashes()),
        fail_mode=settings.fail_mode,
        non_media=non_media if not hashed.is_media and hashed.error is None else None,
        errors=errors,
        error_prefix=filename,
        media_type=result.media_type,
        started=started,
    )
    if settings.audit:
        scanner._store.record_decision(
            decision_record(verdict, sha256=result.digest("sha256"), origin=DecisionOrigin.UPLOAD)
        )
    return verdict


def judge_queries(
    scanner: Scanner,
    queries: Sequence[Query],
    *,
    upload_frames: Sequence[FrameHash] = (),
    media_type: str | None = None,
    started: float | None = None,
    verdict_id: str | None = None,
    only_lists: frozenset[str] | None = None,
    origin: DecisionOrigin | None = DecisionOrigin.LOOKUP,
) -> Verdict:
    """The verdict ``scanner`` gives these queries now (``Scanner.lookup``, and retro for
    recorded content). ``origin`` ``None``: not recorded in the decision log."""
    settings = scanner._settings
    matches, lists = scanner._matcher.match_consistent(
        queries,
        upload_frames=upload_frames,
        match_images_in_video=settings.match_images_in_video,
        only_lists=only_lists,
    )
    shown: dict[str, list[str]] = {}
    for q in queries:
        if q.variant == 0:
            shown.setdefault(q.hash_type, []).append(q.value)
    shown = _shown_hashes(shown)
    verdict = judge(
        matches,
        lists,
        hashes=shown,
        fail_mode=settings.fail_mode,
        media_type=media_type,
        started=started,
        verdict_id=verdict_id,
    )
    if settings.audit and origin is not None:
        sha = shown.get("sha256", [None])[0]
        scanner._store.record_decision(decision_record(verdict, sha256=sha, origin=origin))
    return verdict


class ListSyncer(Protocol):
    """What ``Scanner.sync`` calls: ``uploadscan.sync.sync_lists``."""

    def __call__(
        self,
        store: Store,
        names: Sequence[str] | None,
        *,
        deadline_seconds: float | None = ...,
        on_progress: Callable[[int, int | None], None] | None = ...,
    ) -> Sequence[SyncResult]: ...


_list_syncer: ListSyncer | None = None


def set_list_syncer(syncer: ListSyncer) -> None:
    """Install what ``Scanner.sync`` calls. The sync adapter sits outside the core (the core
    never imports it); the package's entry point wires it in (``uploadscan/__init__``)."""
    global _list_syncer
    _list_syncer = syncer
