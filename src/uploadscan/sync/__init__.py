"""Keeping hash lists in sync with their publishers.

A ``Source`` (files, a signed HTTP feed, TCAP, ThreatExchange) turns the list's stored
checkpoint into ``FetchBatch`` values; ``sync_list`` applies each batch to the store in one
transaction together with its checkpoint, within a whole-sync deadline. This package is
private API: the scanner and the CLI call ``sync_lists``; ``lists add`` calls
``check_source``; the CLI's ``keys generate`` and ``feed publish`` call ``generate_keypair``
and ``publish_feed``.

Errors raised on purpose are ``SyncError`` subclasses from the library's tree
(``FeedVerificationError``, ``StaleCheckpointError``, ``TruncatedDownloadError``,
``SyncTimeoutError``) or ``ConfigError`` for a source that cannot work as configured.
"""

from __future__ import annotations

from .._errors import StaleCheckpointError, SyncTimeoutError, TruncatedDownloadError
from ._base import FetchBatch, Source, map_signal_type
from ._credentials import Credentials, Secret
from ._deadline import DEFAULT_DEADLINE_SECONDS
from ._feed_publish import PublishResult, publish_feed
from ._http import HttpOptions
from ._keys import generate_keypair, load_public_key
from ._runner import ProgressCallback, SyncResult, sync_all, sync_list, sync_lists
from ._uri import CheckedSource, check_source, source_from_uri

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "CheckedSource",
    "Credentials",
    "FetchBatch",
    "HttpOptions",
    "ProgressCallback",
    "PublishResult",
    "Secret",
    "Source",
    "StaleCheckpointError",
    "SyncResult",
    "SyncTimeoutError",
    "TruncatedDownloadError",
    "check_source",
    "generate_keypair",
    "load_public_key",
    "map_signal_type",
    "publish_feed",
    "source_from_uri",
    "sync_all",
    "sync_list",
    "sync_lists",
]
