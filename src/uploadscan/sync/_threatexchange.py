"""ThreatExchange ``/{privacy_group}/threat_updates`` (the route GIFCT members use).

Wire format as python-threatexchange uses it (``exchanges/clients/fb_threatexchange/api.py``
``get_threat_updates`` and ``_CursoredResponse``; ``threat_updates.py`` ``ThreatUpdateJSON``;
``exchanges/impl/fb_threatexchange_api.py`` ``fetch_iter``): a Graph API GET with query
parameters ``access_token``, ``start_time``, ``limit`` (page size), ``fields`` and ``types``;
the answer is ``{"data": [...], "paging": {"next": <url>}}`` and ``next`` is followed until
absent. Each update has ``id``, ``indicator``, ``type``, ``last_updated`` and
``should_delete``, and ``descriptors.data[]`` with ``tags`` (a list, or ``{"data": [{"text"}]}``)
and ``status``. An update without ``descriptors`` is a deletion too (ThreatExchange issue 834,
as ``ThreatUpdateJSON.should_delete`` handles it).

So is an update with no descriptor we can see: an empty ``descriptors.data``, or only
descriptors without an ``owner`` (a ThreatExchange visibility bug). python-threatexchange's
``FBThreatExchangeIndicatorRecord.from_threatexchange_json`` skips ownerless descriptors and
returns ``None`` when no opinion is left; ``fetch_iter`` puts that ``None`` in the delta, and a
``None`` update deletes the signal (``naive_fetch_merge``). Keeping such an indicator would
block uploads on a record nobody vouches for any more, so it is removed here too (and
counted in the sync summary); an ownerless descriptor's tags and status are ignored.

The checkpoint is ``{"update_time": <highest last_updated>, "last_fetch_time": <unix>}``,
resumed with ``start_time=update_time``. ThreatExchange keeps deletion records for 90 days,
so a checkpoint older than 85 days (``FBThreatExchangeCheckpoint.is_stale``) cannot be
resumed: ``StaleCheckpointError`` makes the runner refetch everything.

Types kept: ``HASH_PDQ`` as pdq; ``HASH_MD5``/``HASH_SHA256`` as md5/sha256, and their
``HASH_VIDEO_*`` forms with a ``video`` label; ``HASH_TMK`` as tmk (the indicator is the
``.tmk`` file's text form, ``TMK1FVECPDQF|`` then base64, 351 KB; see ``_tmk_format``).
Descriptor tags become labels. An indicator
whose every descriptor says ``NON_MALICIOUS`` is removed (nobody vouches for it any more).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from .._errors import ConfigError, InvalidHashError, StaleCheckpointError, SyncError
from ..store._lists import EntryUpsert
from ._base import FetchBatch, bounded_labels
from ._credentials import ENV_TE_TOKEN, Credentials
from ._entry_builder import EntryBuilder
from ._http import HttpOptions, check_url, describe_url, http_get

__all__ = ["ThreatExchangeSource"]

BASE_URL = "https://graph.facebook.com/v26.0"  # python-threatexchange's _TE_BASE_URL
STALE_AFTER_SECONDS = 3600 * 24 * 85
_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "HASH_PDQ": ("pdq", ()),
    "HASH_MD5": ("md5", ()),
    "HASH_VIDEO_MD5": ("md5", ("video",)),
    "HASH_SHA256": ("sha256", ()),
    "HASH_VIDEO_SHA256": ("sha256", ("video",)),
    "HASH_TMK": ("tmk", ()),
}
# ThreatUpdateJSON.te_threat_updates_fields() in python-threatexchange.
FIELDS = (
    "id",
    "indicator",
    "type",
    "last_updated",
    "should_delete",
    "descriptors{reactions,my_reactions,owner{id},tags,status,added_on}",
)
_MAX_PAGE_BYTES = 64 << 20
# A page of TMK indicators is ~351 KB per update: the page limit grows with the page size so
# a full page of them is accepted (500 updates: 200 MB; lower page_size bounds it lower), up to
# a hard cap whatever page_size says, so that one response can never exhaust memory.
_MAX_UPDATE_BYTES = 400_000
_PAGE_BYTES_CAP = 256 << 20
_MAX_PAGE_SIZE = 1000
_MAX_PAGES = 1_000_000
_OPTIONS = ("base_url", "page_size")


class ThreatExchangeSource:
    """The threat_updates of one privacy group, read with an app access token."""

    def __init__(
        self,
        privacy_group: str,
        credentials: Credentials,
        *,
        base_url: str = BASE_URL,
        page_size: int = 500,
        http_options: HttpOptions | None = None,
    ) -> None:
        if not re.fullmatch(r"[0-9]{1,20}", privacy_group or ""):
            raise ConfigError(
                "a threatexchange source is 'threatexchange:<privacy group id>' (digits), got "
                f"{privacy_group[:40]!r}"
            )
        if not 1 <= page_size <= 5000:
            raise ConfigError(f"page_size must be in [1, 5000], got {page_size}")
        if credentials.threatexchange_token is None:
            raise ConfigError(
                f"ThreatExchange needs an app access token: set {ENV_TE_TOKEN} or a "
                "'threatexchange' section in the credentials file"
            )
        self.http = http_options or HttpOptions()
        self.base_url = base_url.rstrip("/")
        check_url(self.base_url + "/", self.http)
        self.privacy_group = privacy_group
        self.page_size = page_size
        self._token = credentials.threatexchange_token

    @classmethod
    def from_options(
        cls,
        privacy_group: str,
        options: Mapping[str, str],
        credentials: Credentials,
        http_options: HttpOptions,
    ) -> ThreatExchangeSource:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown threatexchange option(s) {', '.join(unknown)}; "
                f"known: {', '.join(_OPTIONS)}"
            )
        try:
            page_size = int(options.get("page_size", "500"))
        except ValueError:
            raise ConfigError("page_size must be an integer") from None
        if not 1 <= page_size <= _MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {_MAX_PAGE_SIZE}, got {page_size}")
        return cls(
            privacy_group,
            credentials,
            base_url=options.get("base_url") or BASE_URL,
            page_size=page_size,
            http_options=http_options,
        )

    @property
    def description(self) -> str:
        return f"threatexchange privacy group {self.privacy_group}"

    def __repr__(self) -> str:
        return f"ThreatExchangeSource({self.privacy_group!r})"

    def fetch(self, checkpoint: str | None) -> Iterator[FetchBatch]:
        update_time = 0
        if checkpoint:
            state = _parse_checkpoint(checkpoint)
            if state is None or time.time() - state[1] > STALE_AFTER_SECONDS:
                raise StaleCheckpointError(f"{self.description}: checkpoint too old to resume")
            update_time = state[0]
        started = int(time.time())
        params: dict[str, str] = {
            "access_token": self._token.reveal(),
            "limit": str(self.page_size),
            "fields": ",".join(FIELDS),
            "types": ",".join(_TYPES),
        }
        if update_time:
            params["start_time"] = str(update_time)
        url: str | None = (
            f"{self.base_url}/{self.privacy_group}/threat_updates/?"
            + urllib.parse.urlencode(params)
        )
        highest = update_time
        for _ in range(_MAX_PAGES):
            if url is None:
                return
            page = self._page(url)
            batch, highest = self._batch(page["data"], describe_url(url), highest)
            batch.checkpoint = json.dumps(
                {"update_time": highest, "last_fetch_time": started}, sort_keys=True
            )
            yield batch
            url = self._next(page)
        raise SyncError(f"{self.description}: more than {_MAX_PAGES} pages")

    def _page(self, url: str) -> dict[str, Any]:
        limit = min(max(_MAX_PAGE_BYTES, self.page_size * _MAX_UPDATE_BYTES), _PAGE_BYTES_CAP)
        response = http_get(url, options=self.http.with_max_bytes(limit))
        try:
            page = json.loads(response.body)
        except ValueError:
            raise SyncError(f"{describe_url(url)}: response is not JSON") from None
        if not isinstance(page, dict) or not isinstance(page.get("data", []), list):
            raise SyncError(f"{describe_url(url)}: response has no 'data' list")
        page.setdefault("data", [])
        return page

    def _next(self, page: Mapping[str, Any]) -> str | None:
        paging = page.get("paging")
        next_url = paging.get("next") if isinstance(paging, dict) else None
        if not next_url:
            return None
        if not isinstance(next_url, str):
            raise SyncError(f"{self.description}: paging.next must be a string")
        here, there = urllib.parse.urlsplit(self.base_url), urllib.parse.urlsplit(next_url)
        if (there.scheme, there.netloc) != (here.scheme, here.netloc):
            # The next URL carries the access token: never send it to another host.
            raise SyncError(
                f"{self.description}: refused next page on another host ({describe_url(next_url)})"
            )
        return next_url

    def _batch(self, updates: list[Any], where: str, highest: int) -> tuple[FetchBatch, int]:
        skipped: Counter[str] = Counter()
        builder = EntryBuilder(skipped)
        final: dict[tuple[str, str], EntryUpsert | None] = {}
        for pos, update in enumerate(updates):
            if not isinstance(update, dict):
                raise SyncError(f"{where}: update {pos} is not an object")
            try:
                highest = max(highest, int(update.get("last_updated", 0)))
            except (TypeError, ValueError):
                raise SyncError(f"{where}: update {pos} has a bad last_updated") from None
            kind = str(update.get("type", ""))
            mapped = _TYPES.get(kind)
            if mapped is None:
                skipped[f"{kind or 'untyped'} (not a hash type uploadscan matches)"] += 1
                continue
            hash_type, type_labels = mapped
            indicator = update.get("indicator")
            try:
                key = builder.delete_key(hash_type, indicator)
                descriptors = _descriptors(update)
                if update.get("should_delete") or descriptors is None:
                    final[key] = None
                    continue
                if not descriptors:
                    skipped["no visible descriptor (removed, as python-threatexchange does)"] += 1
                    final[key] = None
                    continue
                statuses = {str(d.get("status", "")) for d in descriptors}
                if descriptors and statuses == {"NON_MALICIOUS"}:
                    skipped["marked NON_MALICIOUS by every owner"] += 1
                    final[key] = None
                    continue
                labels = bounded_labels((*type_labels, *_tags(descriptors)))
                entry = builder.upsert(
                    hash_type,
                    indicator,
                    labels,
                    None if update.get("id") is None else str(update["id"]),
                )
            except InvalidHashError as exc:
                raise SyncError(f"{where}: update {pos} (id {update.get('id')!r}): {exc}") from None
            if entry is not None:
                final[key] = entry
        batch = FetchBatch(
            upserts=[e for e in final.values() if e is not None],
            deletes=[k for k, e in final.items() if e is None],
            skipped=skipped,
        )
        return batch, highest


def _descriptors(update: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The update's descriptors that have an owner; ``None`` when it has no ``descriptors``."""
    descriptors = update.get("descriptors")
    if not isinstance(descriptors, dict):
        return None
    data = descriptors.get("data", [])
    if not isinstance(data, list):
        return []
    return [d for d in data if isinstance(d, dict) and "owner" in d]


def _tags(descriptors: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for d in descriptors:
        tags = d.get("tags", [])
        if isinstance(tags, dict):  # {"data": [{"text": ...}]} as the Graph API may return
            tags = [t.get("text") for t in tags.get("data", []) if isinstance(t, dict)]
        if isinstance(tags, list):
            out.extend(t for t in tags if isinstance(t, str))
    return out


def _parse_checkpoint(checkpoint: str) -> tuple[int, float] | None:
    try:
        data = json.loads(checkpoint)
        return int(data["update_time"]), float(data["last_fetch_time"])
    except (ValueError, TypeError, KeyError):
        return None
