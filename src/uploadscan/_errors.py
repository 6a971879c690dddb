"""Every error uploadscan raises on purpose.

An upload handler must be able to tell "this upload is bad" from "our setup is bad" without
parsing messages, so each failure has its own type. Errors that are about a value the caller
passed also subclass the matching builtin (``ValueError``, ``KeyError``), so generic handlers
keep working.

::

    UploadScanError
    ├── MediaError (ValueError)             the upload itself cannot be hashed
    │   ├── UnsupportedMediaError           unknown format, or a format whose plug-in is missing
    │   ├── MediaTooLargeError              over a configured limit (bytes, pixels, frames, time)
    │   └── CorruptMediaError               truncated or malformed data
    ├── InvalidHashError (ValueError)       a hash string that is not valid for its type
    ├── UnknownHashTypeError (KeyError)     a hash-type name nobody registered
    ├── StoreError                          the local data directory
    │   ├── StoreCorruptError               the SQLite file or an index file is damaged
    │   └── ListNotFoundError (KeyError)    no hash list of that name
    ├── IndexError_                         an index file is missing, stale or damaged
    ├── SyncError                           fetching or applying a list update failed
    │   └── FeedVerificationError           signature, digest or sequence check failed
    └── ConfigError (ValueError)            an invalid setting
"""

from __future__ import annotations


class UploadScanError(Exception):
    """Base class of every error uploadscan raises on purpose."""


class MediaError(UploadScanError, ValueError):
    """The upload cannot be hashed. ``media_type`` is the sniffed type when one was found."""

    def __init__(self, message: str, *, media_type: str | None = None) -> None:
        super().__init__(message)
        self.media_type = media_type


class UnsupportedMediaError(MediaError):
    """Not a format we hash, or a format whose optional plug-in is not installed.

    ``extra`` names the pip extra that adds support (for example ``"heif"``), if there is one.
    """

    def __init__(
        self, message: str, *, media_type: str | None = None, extra: str | None = None
    ) -> None:
        super().__init__(message, media_type=media_type)
        self.extra = extra


class MediaTooLargeError(MediaError):
    """The upload exceeds a configured limit; ``limit`` names it (``"max_pixels"``...)."""

    def __init__(
        self,
        message: str,
        *,
        media_type: str | None = None,
        limit: str | None = None,
    ) -> None:
        super().__init__(message, media_type=media_type)
        self.limit = limit


class CorruptMediaError(MediaError):
    """The data claims a known format but cannot be decoded (truncated, malformed)."""


class InvalidHashError(UploadScanError, ValueError):
    """A hash value is not valid for its hash type."""


class UnknownHashTypeError(UploadScanError, KeyError):
    """No hash type is registered under that name."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class StoreError(UploadScanError):
    """The local data directory (SQLite store) cannot be used."""


class StoreCorruptError(StoreError):
    """The store or one of its files is damaged; ``uploadscan doctor`` can repair indexes."""


class ListNotFoundError(StoreError, KeyError):
    """No hash list with that name is configured."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class IndexError_(UploadScanError):
    """An index file is missing, stale or damaged. It can always be rebuilt from the store."""


class SyncError(UploadScanError):
    """Fetching or applying a hash-list update failed; the previous list stays in use."""


class FeedVerificationError(SyncError):
    """A feed failed authentication: bad signature, digest mismatch, or sequence rollback."""


class ConfigError(UploadScanError, ValueError):
    """A setting or argument is invalid."""
