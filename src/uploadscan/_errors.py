"""Every error uploadscan raises on purpose.

An upload handler must be able to tell "this upload is bad" from "our setup is bad" without
parsing messages, so each failure has its own type. Errors that are about a value the caller
passed also subclass the matching builtin (``ValueError``, ``KeyError``, ``OSError``), so
generic handlers keep working. Every class the library raises is defined here, and the ones a
caller catches are exported from ``uploadscan``.

::

    UploadScanError
    ├── UploadReadError (OSError)           the upload could not be read: no such file, a directory
    ├── MediaError (ValueError)             the upload itself cannot be hashed
    │   ├── UnsupportedMediaError           media we recognise but cannot decode (a missing plug-in)
    │   ├── MediaTooLargeError              over a configured limit (bytes, pixels, frames, time)
    │   └── CorruptMediaError               truncated or malformed data
    ├── InvalidHashError (ValueError)       a hash string that is not valid for its type
    │   └── FeatureRecordError              a local-feature record that is malformed
    ├── UnknownHashTypeError (KeyError)     a hash-type name nobody registered
    ├── HashTypeError (TypeError)           a plug-in hash type that breaks the protocol
    ├── StoreError                          the local data directory
    │   ├── StoreCorruptError               the SQLite file or one of its files is damaged
    │   ├── StoreVersionError               written by a newer uploadscan than this one
    │   ├── DeltaUnavailableError           changes asked for across a compacted range
    │   └── ListNotFoundError (KeyError)    no hash list of that name
    ├── IndexFileError                      an index file is missing, stale or damaged
    ├── SyncError                           fetching or applying a list update failed
    │   ├── FeedVerificationError           signature, digest or sequence check failed
    │   ├── StaleCheckpointError            the source cannot resume from the stored checkpoint
    │   ├── TruncatedDownloadError          the connection closed before the body was complete
    │   └── SyncTimeoutError                a list's whole sync ran past its deadline
    ├── UnpicklableSecretError (TypeError)  a credential was about to be pickled
    ├── RequestError                        the sidecar service cannot serve a request as sent
    └── ConfigError (ValueError)            an invalid setting or argument
"""

from __future__ import annotations


class UploadScanError(Exception):
    """Base class of every error uploadscan raises on purpose."""


class UploadReadError(UploadScanError, OSError):
    """The upload could not be read at all: a missing path, a directory, an I/O error.

    That is a problem of the caller, not of the content, so ``Scanner.scan`` raises it instead
    of answering with a fail-mode verdict, and nothing enters the review queue.
    """


class MediaError(UploadScanError, ValueError):
    """The upload cannot be hashed. ``media_type`` is the sniffed type when one was found."""

    def __init__(self, message: str, *, media_type: str | None = None) -> None:
        super().__init__(message)
        self.media_type = media_type


class UnsupportedMediaError(MediaError):
    """A format we recognise but cannot decode, or whose optional plug-in is not installed.

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


class FeatureRecordError(InvalidHashError):
    """A stored or given local-feature record (the ``sift`` type's value) is malformed: a bad
    length, an unknown version, keypoints outside the image. Raised by the bounded parser
    before anything is allocated from the record's claims."""


class UnknownHashTypeError(UploadScanError, KeyError):
    """No hash type is registered under that name."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class HashTypeError(UploadScanError, TypeError):
    """A hash type cannot be registered: a bad or duplicate name, or a broken declaration."""


class StoreError(UploadScanError):
    """The local data directory (SQLite store) cannot be used."""


class StoreCorruptError(StoreError):
    """The store or one of its files is damaged; ``uploadscan doctor`` can repair indexes."""


class StoreVersionError(StoreError):
    """The store was written by a newer uploadscan; ``found`` is its schema version."""

    def __init__(self, message: str, *, found: int) -> None:
        super().__init__(message)
        self.found = found


class DeltaUnavailableError(StoreError):
    """Changes were asked for across a version range whose tombstones ``compact()`` already
    purged; the caller must read a fresh snapshot instead."""


class ListNotFoundError(StoreError, KeyError):
    """No hash list with that name is configured."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class IndexFileError(UploadScanError):
    """An index file is missing, stale or damaged. It can always be rebuilt from the store."""


class SyncError(UploadScanError):
    """Fetching or applying a hash-list update failed; the previous list stays in use."""


class FeedVerificationError(SyncError):
    """A feed failed authentication: bad signature, digest mismatch, or sequence rollback."""


class StaleCheckpointError(SyncError):
    """The stored checkpoint is too old to resume from; the sync refetches the whole list."""


class TruncatedDownloadError(SyncError):
    """The connection closed before the announced body (``Content-Length``) arrived."""


class SyncTimeoutError(SyncError):
    """A list's sync ran past its whole-sync deadline.

    The batch in flight was not applied; batches applied before it stay, each with its own
    checkpoint, so the list holds a consistent earlier state and the next sync resumes.
    ``seconds`` is the deadline that was configured.
    """

    def __init__(self, message: str, *, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class UnpicklableSecretError(UploadScanError, TypeError):
    """Something tried to pickle a credential (a crash dump, a task queue, a cache).

    A ``TypeError`` as well, which is what pickle's callers expect from an object that
    cannot be pickled.
    """


class RequestError(UploadScanError):
    """The sidecar service cannot serve a request as sent; answered as a JSON error.

    ``status`` is the HTTP status, ``code`` a stable machine-readable name
    (``body_too_large``, ``empty_body``...), ``headers`` extra response headers such as
    ``Retry-After``.
    """

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class ConfigError(UploadScanError, ValueError):
    """A setting or argument is invalid."""
