"""Tech Against Terrorism's TCAP hash list (``GET api/hash-list/v2/all``).

Wire format as used by python-threatexchange's client
(``threatexchange/exchanges/clients/techagainstterrorism/api.py``, ``TATHashListAPI``, and
``exchanges/impl/techagainstterrorism_api.py``): authenticate with ``POST token-auth/tcap/``
(form fields ``username``, ``password``, ``resend``) which answers ``{"token": ...}``, then
send ``Authorization: Bearer <token>`` to ``api/hash-list/v2/all?order=asc&after=<checkpoint>``.
Each page is ``{"count", "next", "previous", "checkpoint", "results": [...]}`` where a result
carries ``hash_digest``, ``algorithm`` (``MD5``, ``SHA256``, ``SHA512``, ``PDQ``),
``ideology`` (``Far-Right``, ``Islamist``), ``file_type``, ``deleted``, ``updated_on``,
``created_on`` and ``id``; ``checkpoint`` is ``"<updated_on>,<id>"`` of the page's last record
and ``count`` the number of records after ``after``.

Paging is by checkpoint, never by ``next``: every page is requested from the configured host
with ``after=<the previous page's checkpoint>``, and ``next`` only says whether more follow.
That is how python-threatexchange's ``fetch_hashes_iter`` pages in the version whose tests
record the API's JSON (its test asserts the second call is ``after="checkpoint_1"``), and how
its ``fetch_iter`` resumes a later sync. The recorded ``next`` is an absolute URL on another
host over plain http (``http://dev.terrorismanalytics.org/hash-list/v2/all?limit=1000&
offset=1000&order=asc``): following it would send the bearer token elsewhere, and offset
paging skips or repeats records that change while we page, where keyset paging does not. A
page with ``next`` set that does not move the checkpoint is an error, not a loop.

Unlike python-threatexchange, which keeps only PDQ and the MD5s of mov/m4v/mp4/webm files,
image MD5 and SHA-256 are kept too (uploadscan hashes every upload's bytes); SHA-512 has no
hash type here and is skipped and counted. Ideology and file type become ``ideology:<x>`` and
``file_type:<x>`` labels, exactly as delivered (``ideology:Far-Right``: a label filter must
match what TCAP publishes), plus ``video`` for digests of video files. A ready-made token can
be given instead of a username and password (``UPLOADSCAN_TCAP_TOKEN``).
"""

from __future__ import annotations

import json
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from .._errors import ConfigError, InvalidHashError, SyncError
from ..store._lists import EntryUpsert
from ._base import FetchBatch, bounded_labels
from ._credentials import ENV_TCAP_CREDENTIALS, ENV_TCAP_TOKEN, Credentials, Secret
from ._entry_builder import EntryBuilder
from ._http import HttpOptions, check_url, describe_url, http_get

__all__ = ["TcapSource"]

BASE_URL = "https://app.terrorismanalytics.org/"
AUTH_ENDPOINT = "token-auth/tcap/"
HASH_LIST_ENDPOINT = "api/hash-list/v2/all"
_ALGORITHMS = {"MD5": "md5", "SHA256": "sha256", "PDQ": "pdq"}
# File types whose MD5 is a video's. python-threatexchange's _is_compatible_signal_type()
# names mov, m4v, mp4 and webm; the other common video containers are videos too.
_VIDEO_TYPES = frozenset({"mov", "m4v", "mp4", "webm", "avi", "mkv", "flv", "wmv", "3gp"})
_MAX_PAGE_BYTES = 64 << 20
_MAX_PAGES = 1_000_000
_OPTIONS = ("base_url",)


class TcapSource:
    """The TCAP hash list; ``credentials`` must hold a token or a username and password."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str = BASE_URL,
        http_options: HttpOptions | None = None,
    ) -> None:
        self.http = http_options or HttpOptions()
        if not base_url.endswith("/"):
            base_url += "/"
        check_url(base_url, self.http)
        self.base_url = base_url
        self._token = credentials.tcap_token
        self._username = credentials.tcap_username
        self._password = credentials.tcap_password
        if self._token is None and (self._username is None or self._password is None):
            raise ConfigError(
                f"TCAP needs credentials: set {ENV_TCAP_TOKEN}, or {ENV_TCAP_CREDENTIALS} as "
                "'username:password', or a 'tcap' section in the credentials file"
            )

    @classmethod
    def from_options(
        cls, options: Mapping[str, str], credentials: Credentials, http_options: HttpOptions
    ) -> TcapSource:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown tcap option(s) {', '.join(unknown)}; known: base_url")
        return cls(
            credentials, base_url=options.get("base_url") or BASE_URL, http_options=http_options
        )

    @property
    def description(self) -> str:
        return f"tcap {describe_url(self.base_url)}"

    def __repr__(self) -> str:
        return f"TcapSource({describe_url(self.base_url)!r})"

    def fetch(self, checkpoint: str | None) -> Iterator[FetchBatch]:
        headers = {
            "Authorization": f"Bearer {self._bearer().reveal()}",
            "Accept": "application/json",
        }
        endpoint = self.base_url + HASH_LIST_ENDPOINT
        after = checkpoint or ""
        for _ in range(_MAX_PAGES):
            url = f"{endpoint}?{urllib.parse.urlencode({'order': 'asc', 'after': after})}"
            page = self._page(url, headers)
            where = describe_url(url)
            batch = self._batch(page, where)
            page_checkpoint = page.get("checkpoint")
            if page_checkpoint is not None and not isinstance(page_checkpoint, str):
                raise SyncError(f"{where}: 'checkpoint' must be a string")
            # An empty page may carry no checkpoint: keep the one we have, as
            # python-threatexchange does.
            reached = page_checkpoint or after
            batch.checkpoint = reached or None
            count = page.get("count")
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                batch.pending = count
            more = page.get("next")
            if more is not None and not isinstance(more, str):
                raise SyncError(f"{where}: 'next' must be a string or null")
            yield batch
            if not more:
                return
            if reached == after:
                raise SyncError(
                    f"{self.description}: the API says more records follow checkpoint "
                    f"{after[:60]!r} but its page did not move the checkpoint"
                )
            after = reached
        raise SyncError(f"{self.description}: more than {_MAX_PAGES} pages")

    def _bearer(self) -> Secret:
        if self._token is not None:
            return self._token
        assert self._username is not None and self._password is not None
        response = http_get(
            self.base_url + AUTH_ENDPOINT,
            options=self.http.with_max_bytes(1 << 20),
            form={
                "username": self._username,
                "password": self._password.reveal(),
                "resend": "False",
            },
        )
        try:
            token = json.loads(response.body).get("token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise SyncError(f"{self.description}: authentication answered without a token")
        return Secret(token)

    def _page(self, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
        response = http_get(url, options=self.http.with_max_bytes(_MAX_PAGE_BYTES), headers=headers)
        try:
            page = json.loads(response.body)
        except ValueError:
            raise SyncError(f"{describe_url(url)}: response is not JSON") from None
        if not isinstance(page, dict) or not isinstance(page.get("results"), list):
            raise SyncError(f"{describe_url(url)}: response has no 'results' list")
        return page

    def _batch(self, page: Mapping[str, Any], where: str) -> FetchBatch:
        skipped: Counter[str] = Counter()
        builder = EntryBuilder(skipped)
        # Records arrive in update order; within a page the last record for a hash wins.
        final: dict[tuple[str, str], EntryUpsert | None] = {}
        for pos, record in enumerate(page["results"]):
            if not isinstance(record, dict):
                raise SyncError(f"{where}: result {pos} is not an object")
            algorithm = str(record.get("algorithm", "")).upper()
            hash_type = _ALGORITHMS.get(algorithm)
            if hash_type is None:
                skipped[f"{algorithm.lower() or 'unknown'} (no such hash type)"] += 1
                continue
            digest = record.get("hash_digest")
            try:
                key = builder.delete_key(hash_type, digest)
                if record.get("deleted"):
                    final[key] = None
                    continue
                labels = _labels(record, hash_type)
                ext_id = record.get("id")
                entry = builder.upsert(
                    hash_type, digest, labels, None if ext_id is None else str(ext_id)
                )
            except InvalidHashError as exc:
                raise SyncError(f"{where}: result {pos} (id {record.get('id')!r}): {exc}") from None
            if entry is not None:
                final[key] = entry
        return FetchBatch(
            upserts=[e for e in final.values() if e is not None],
            deletes=[k for k, e in final.items() if e is None],
            skipped=skipped,
        )


def _labels(record: Mapping[str, Any], hash_type: str) -> tuple[str, ...]:
    labels = []
    ideology = record.get("ideology")
    if isinstance(ideology, str) and ideology:
        labels.append(f"ideology:{ideology}")
    file_type = record.get("file_type")
    if isinstance(file_type, str) and file_type:
        labels.append(f"file_type:{file_type}")
        if hash_type != "pdq" and file_type.lower() in _VIDEO_TYPES:
            labels.append("video")
    return bounded_labels(labels)
