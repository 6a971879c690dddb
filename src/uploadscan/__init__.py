"""uploadscan: stop known terrorist and violent-extremist content in an upload handler.

::

    import uploadscan

    with uploadscan.Scanner.open() as scanner:
        verdict = scanner.scan(upload_bytes)
        if verdict.action is uploadscan.Action.BLOCK:
            ...

The names below are the whole public API; everything in ``_modules`` is private. Plug-in
hash types use ``uploadscan.hashtypes`` and test themselves with ``uploadscan.testing``.

The package is laid out as its pipeline: ``media`` (intake, limits, decoding) feeds
``hashing`` (one plug-in module per hash type), whose values the ``store`` keeps and the
``index`` files look up; ``_matching``, ``_policy``, ``_judge`` and ``_scanner`` make verdicts
on top. ``sync``, ``serve``, ``batch`` and ``cli`` are adapters around that core: they import
it, it never imports them. This module is where the two meet (``Scanner.sync`` is wired to the
sync adapter here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import _scanner
from ._action import Action
from ._errors import (
    ConfigError,
    CorruptMediaError,
    DeltaUnavailableError,
    FeatureRecordError,
    FeedVerificationError,
    HashTypeError,
    IndexFileError,
    InvalidHashError,
    ListNotFoundError,
    MediaError,
    MediaTooLargeError,
    RequestError,
    StaleCheckpointError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
    SyncError,
    SyncTimeoutError,
    TruncatedDownloadError,
    UnknownHashTypeError,
    UnpicklableSecretError,
    UnsupportedMediaError,
    UploadReadError,
    UploadScanError,
)
from ._scanner import Scanner
from ._settings import ScannerSettings
from ._verdict import Match, Verdict
from .hashing._hash_file import hash_file
from .hashing._result import FrameHash, HashResult
from .media._limits import Limits
from .store._lists import HashList, ListKind, ListSettings, SyncResult
from .store._store import Store

__version__ = "0.2.0"

__all__ = [
    "Action",
    "ConfigError",
    "CorruptMediaError",
    "DeltaUnavailableError",
    "FeatureRecordError",
    "FeedVerificationError",
    "FrameHash",
    "HashList",
    "HashResult",
    "HashTypeError",
    "IndexFileError",
    "InvalidHashError",
    "Limits",
    "ListKind",
    "ListNotFoundError",
    "ListSettings",
    "Match",
    "MediaError",
    "MediaTooLargeError",
    "RequestError",
    "Scanner",
    "ScannerSettings",
    "StaleCheckpointError",
    "StoreCorruptError",
    "StoreError",
    "StoreVersionError",
    "SyncError",
    "SyncResult",
    "SyncTimeoutError",
    "TruncatedDownloadError",
    "UnknownHashTypeError",
    "UnpicklableSecretError",
    "UnsupportedMediaError",
    "UploadReadError",
    "UploadScanError",
    "Verdict",
    "__version__",
    "hash_file",
]


def _sync_lists(
    store: Store,
    names: Sequence[str] | None,
    *,
    deadline_seconds: float | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Sequence[SyncResult]:
    from .sync import DEFAULT_DEADLINE_SECONDS, sync_lists  # loaded on first sync only

    deadline = DEFAULT_DEADLINE_SECONDS if deadline_seconds is None else deadline_seconds
    return sync_lists(store, names, deadline_seconds=deadline, on_progress=on_progress)


_scanner.set_list_syncer(_sync_lists)
