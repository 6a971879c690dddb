"""uploadscan: stop known terrorist and violent-extremist content in an upload handler.

::

    import uploadscan

    with uploadscan.Scanner.open() as scanner:
        verdict = scanner.scan(upload_bytes)
        if verdict.action is uploadscan.Action.BLOCK:
            ...

The names below are the whole public API; everything in ``_modules`` is private. Plug-in
hash types use ``uploadscan.hashtypes`` and test themselves with ``uploadscan.testing``.
"""

from __future__ import annotations

from ._errors import (
    ConfigError,
    CorruptMediaError,
    FeedVerificationError,
    InvalidHashError,
    ListNotFoundError,
    MediaError,
    MediaTooLargeError,
    StoreCorruptError,
    StoreError,
    SyncError,
    UnknownHashTypeError,
    UnsupportedMediaError,
    UploadScanError,
)
from ._scanner import Scanner
from ._verdict import Action, Match, Verdict
from .hashing._hash_file import hash_file
from .hashing._result import FrameHash, HashResult
from .media._limits import Limits
from .store._lists import HashList, ListKind, ListSettings

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ConfigError",
    "CorruptMediaError",
    "FeedVerificationError",
    "FrameHash",
    "HashList",
    "HashResult",
    "InvalidHashError",
    "Limits",
    "ListKind",
    "ListNotFoundError",
    "ListSettings",
    "Match",
    "MediaError",
    "MediaTooLargeError",
    "Scanner",
    "StoreCorruptError",
    "StoreError",
    "SyncError",
    "UnknownHashTypeError",
    "UnsupportedMediaError",
    "UploadScanError",
    "Verdict",
    "__version__",
    "hash_file",
]
