"""``GET /m/lookup`` as the hasher-matcher-actioner (HMA) answers it, so HMA clients work unchanged.

Mirrors ``lookup_get`` in facebook/ThreatExchange
``hasher-matcher-actioner/src/OpenMediaMatch/blueprints/matching.py``: query parameters
``signal`` and ``signal_type`` (plus optional ``banks``, a comma-separated filter); the answer is
a JSON object from bank name to the matching bank contents::

    {"BANK_A": [{"bank_content_id": 1001, "distance": "4"}]}

``distance`` is a string because HMA renders it with ``SignalSimilarityInfo.pretty_str()``;
errors are ``{"message": "..."}`` as HMA's ``api_error_handler`` writes them. Our hash lists play
the part of HMA's banks and list entries the part of bank contents (``bank_content_id`` is the
entry id). HMA's ``video_md5`` is the MD5 of the file, which is our ``md5``.

Not mirrored: ``url`` (HMA fetches and hashes a URL only when it runs the hasher role; fetching
arbitrary URLs from a sidecar would be a server-side request forgery hole, so this answers 403 as
HMA does without that role) and the ``seed``/``bypass_coinflip`` sampling of
``matching_enabled_ratio`` (lists have no such ratio: every list always matches).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import hashtypes
from .._verdict import Verdict
from ._body import RequestError

__all__ = ["HMA_PREFIX", "HmaQuery", "hma_response", "parse_hma_query"]

#: Paths under this prefix are HMA's: their errors are ``{"message": ...}``.
HMA_PREFIX = "/m/"

#: HMA signal-type names that differ from ours.
SIGNAL_TYPE_ALIASES = {"video_md5": "md5"}


class HmaQuery:
    """A validated ``/m/lookup`` query: our hash type, the canonical value, optional bank filter."""

    __slots__ = ("banks", "hash_type", "value")

    def __init__(self, hash_type: str, value: str, banks: frozenset[str] | None) -> None:
        self.hash_type = hash_type
        self.value = value
        self.banks = banks


def hma_error(status: int, message: str) -> RequestError:
    """An error in HMA's shape; ``code`` ``hma`` makes the app render ``{"message": ...}``."""
    return RequestError(status, "hma", message)


def parse_hma_query(params: Mapping[str, str]) -> HmaQuery:
    if params.get("url"):
        raise hma_error(403, "Hashing is disabled, missing role")
    signal = params.get("signal")
    signal_type = params.get("signal_type")
    if not signal or not signal_type:
        raise hma_error(400, "Either url or both signal and signal_type are required")
    name = SIGNAL_TYPE_ALIASES.get(signal_type, signal_type)
    if name not in hashtypes.names():
        raise hma_error(400, f"No such SignalType '{signal_type}'")
    try:
        value = hashtypes.get(name).validate(signal)
    except ValueError as exc:
        raise hma_error(400, f"invalid signal: {exc}") from None
    banks_param = params.get("banks")
    banks = frozenset(banks_param.split(",")) if banks_param else None
    return HmaQuery(name, value, banks)


def hma_response(verdict: Verdict) -> dict[str, Any]:
    """Group the verdict's matches by list, in HMA's ``TMatchByBank`` shape. A ``banks``
    filter is applied by the lookup itself (``Scanner.lookup(lists=...)``), not here, so that
    the verdict recorded for the lookup is the one answered."""
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, int]] = set()
    for match in verdict.matches:
        key = (match.list_name, match.entry_id)
        if key in seen:
            continue
        seen.add(key)
        out.setdefault(match.list_name, []).append(
            {"bank_content_id": match.entry_id, "distance": str(match.distance)}
        )
    return out
