"""ThreatExchange threat_updates source against a local Graph-API-shaped server.

The fake follows python-threatexchange (exchanges/clients/fb_threatexchange/api.py
get_threat_updates and _CursoredResponse; threat_updates.py ThreatUpdateJSON): GET
``/{privacy_group}/threat_updates/`` with access_token, start_time, limit, fields, types;
answers ``{"data": [...], "paging": {"next": url}}``; updates carry id, indicator, type,
last_updated, should_delete and descriptors.data[] with tags and status.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _local_http import LocalServer, Reply, Request
from _media import fixture
from _tmk_values import CLIP_A, CLIP_B, fixture_tmk

from uploadscan import Action, ConfigError, Scanner, SyncError
from uploadscan.hashing._tmk_format import encode_text
from uploadscan.hashtypes import Md5HashType, PdqHashType, Sha256HashType
from uploadscan.store._lists import EntryUpsert, ListKind
from uploadscan.store._store import Store
from uploadscan.sync import Credentials, HttpOptions, source_from_uri, sync_list

PDQ_A, PDQ_B = PdqHashType.example_values
MD5_A, MD5_B = Md5HashType.example_values
SHA_A, _ = Sha256HashType.example_values
TOKEN = "1234567890|te-secret-9d2e"
GROUP = "303636684709969"
FAST = HttpOptions(timeout=2.0, deadline=10.0, retries=1, backoff=0.01)


def descriptor(
    descriptor_id: int,
    *,
    status: str = "MALICIOUS",
    tags: tuple[str, ...] = (),
    owner: str | None = "1234567890",
) -> dict[str, Any]:
    """One entry of ``descriptors.data``; ``owner=None`` leaves the owner out, as
    ThreatExchange does when a descriptor is visible but its owner is not."""
    data: dict[str, Any] = {
        "id": str(descriptor_id),
        "status": status,
        "tags": list(tags),
        "added_on": "2023-11-14T22:13:20+0000",
        "reactions": [],
    }
    if owner is not None:
        data["owner"] = {"id": owner}
    return data


class FakeThreatExchange:
    def __init__(self, server: LocalServer, page_size: int = 2) -> None:
        self.server = server
        self.updates: list[dict[str, Any]] = []
        self.page_size = page_size
        server.routes[f"/v26.0/{GROUP}/threat_updates/"] = self.threat_updates

    def add(
        self,
        kind: str,
        indicator: str,
        *,
        tags: tuple[str, ...] = (),
        delete: bool = False,
        status: str = "MALICIOUS",
        at: int | None = None,
        descriptors: list[dict[str, Any]] | None = None,
    ) -> None:
        """An update; ``descriptors`` replaces the one default descriptor (``[]``: none)."""
        n = len(self.updates) + 1
        update: dict[str, Any] = {
            "id": str(9000 + n),
            "indicator": indicator,
            "type": kind,
            "last_updated": at or 1700000000 + n,
            "should_delete": delete,
        }
        if not delete:
            if descriptors is None:
                descriptors = [descriptor(7000 + n, status=status, tags=tags)]
            update["descriptors"] = {"data": descriptors}
        self.updates.append(update)

    def threat_updates(self, req: Request) -> Reply:
        if req.query.get("access_token") != [TOKEN]:
            err = {"error": {"message": "Invalid OAuth access token.", "code": 190}}
            return Reply(400, json.dumps(err).encode())
        start = int(req.query.get("start_time", ["0"])[0])
        offset = int(req.query.get("offset", ["0"])[0])
        limit = int(req.query.get("limit", ["25"])[0])
        types = set(req.query.get("types", [""])[0].split(",")) - {""}
        rows = [u for u in self.updates if u["last_updated"] >= start]
        if types:
            rows = [u for u in rows if u["type"] in types]
        page = rows[offset : offset + limit]
        body: dict[str, Any] = {"data": page, "paging": {}}
        if offset + limit < len(rows):
            query = dict((k, v[0]) for k, v in req.query.items())
            query["offset"] = str(offset + limit)
            body["paging"]["next"] = f"{self.server.url}{req.path}?{urllib.parse.urlencode(query)}"
        return Reply(200, json.dumps(body).encode())


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as s:
        yield s


@pytest.fixture
def te(server: LocalServer) -> FakeThreatExchange:
    return FakeThreatExchange(server)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "home" / "store.db") as s:
        s.add_list("gifct", kind=ListKind.BLOCK, source=f"threatexchange:{GROUP}")
        yield s


def _source(server: LocalServer, token: str = TOKEN) -> Any:
    creds = Credentials.discover(environ={"UPLOADSCAN_THREATEXCHANGE_TOKEN": token})
    uri = f"threatexchange:{GROUP}?base_url={server.url}/v26.0&page_size=2"
    return source_from_uri(uri, credentials=creds, http_options=FAST)


def _sync(store: Store, server: LocalServer) -> Any:
    return sync_list(store, "gifct", source=_source(server))


def _entries(store: Store) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(e.hash_type, e.value): e.labels for e in store.list_entries("gifct")}


def test_full_sync_maps_types_tags_and_deletes(
    store: Store, server: LocalServer, te: FakeThreatExchange
) -> None:
    te.add("HASH_PDQ", PDQ_A, tags=("terrorism", "gifct_bh"))
    te.add("HASH_VIDEO_MD5", MD5_A, tags=("video_tag",))
    te.add("HASH_MD5", MD5_B)
    te.add("URI", "https://example.org/")  # filtered by types=, never seen
    te.add("HASH_SHA256", SHA_A)
    te.add("HASH_MD5", MD5_B, delete=True)
    te.add("HASH_PDQ", PDQ_B, status="NON_MALICIOUS")
    result = _sync(store, server)
    assert _entries(store) == {
        ("pdq", PDQ_A): ("gifct_bh", "terrorism"),
        ("md5", MD5_A): ("video", "video_tag"),
        ("sha256", SHA_A): (),
    }
    assert result.skipped == {"marked NON_MALICIOUS by every owner": 1}
    first = server.log[0].query
    assert first["access_token"] == [TOKEN] and first["limit"] == ["2"]
    assert "start_time" not in first
    assert set(first["types"][0].split(",")) >= {"HASH_PDQ", "HASH_MD5", "HASH_VIDEO_MD5"}
    assert first["fields"][0].startswith("id,indicator,type,last_updated,should_delete")
    assert len(server.log) == 3  # 6 updates of the requested types, 2 per page
    checkpoint = json.loads(store.get_list("gifct").checkpoint or "")
    assert checkpoint["update_time"] == max(u["last_updated"] for u in te.updates)


def test_incremental_sync_starts_at_the_checkpoint(
    store: Store, server: LocalServer, te: FakeThreatExchange
) -> None:
    te.add("HASH_PDQ", PDQ_A)
    _sync(store, server)
    highest = te.updates[-1]["last_updated"]
    te.add("HASH_PDQ", PDQ_A, delete=True)
    te.add("HASH_MD5", MD5_A)
    server.log.clear()
    result = _sync(store, server)
    assert server.log[0].query["start_time"] == [str(highest)]
    assert (result.added, result.removed) == (1, 1)
    assert set(_entries(store)) == {("md5", MD5_A)}


def test_stale_checkpoint_refetches_everything_and_sweeps(
    store: Store, server: LocalServer, te: FakeThreatExchange
) -> None:
    # The store holds an entry whose deletion record ThreatExchange has since expired.
    store.apply_batch("gifct", [EntryUpsert("pdq", PDQ_B)])
    old = {"update_time": 1600000000, "last_fetch_time": time.time() - 86 * 24 * 3600}
    store.apply_batch("gifct", [EntryUpsert("pdq", PDQ_B)], checkpoint=json.dumps(old))
    te.add("HASH_PDQ", PDQ_A)
    te.add("HASH_MD5", MD5_A)
    te.add("HASH_MD5", MD5_B)
    result = _sync(store, server)
    assert "start_time" not in server.log[0].query
    assert result.full_refetch
    assert set(_entries(store)) == {("pdq", PDQ_A), ("md5", MD5_A), ("md5", MD5_B)}
    assert result.removed == 1
    fresh = json.loads(store.get_list("gifct").checkpoint or "")
    assert time.time() - fresh["last_fetch_time"] < 60


def test_token_never_appears_in_errors(
    store: Store, server: LocalServer, te: FakeThreatExchange
) -> None:
    te.add("HASH_PDQ", PDQ_A)
    wrong = "1234567890|wrong-secret-77"
    source = _source(server, wrong)
    assert wrong not in repr(source) and wrong not in source.description
    with pytest.raises(SyncError, match="HTTP 400") as info:
        sync_list(store, "gifct", source=source)
    assert "secret" not in str(info.value) and "access_token" not in str(info.value)

    server.routes[f"/v26.0/{GROUP}/threat_updates/"] = lambda req: Reply(500, b"down")
    with pytest.raises(SyncError) as info:
        _sync(store, server)
    assert TOKEN.split("|")[1] not in str(info.value)


def test_configuration_errors() -> None:
    creds = Credentials.discover(environ={"UPLOADSCAN_THREATEXCHANGE_TOKEN": TOKEN})
    with pytest.raises(ConfigError, match="privacy group id"):
        source_from_uri("threatexchange:abc", credentials=creds)
    with pytest.raises(ConfigError, match="needs an app access token"):
        source_from_uri(f"threatexchange:{GROUP}", credentials=Credentials())
    with pytest.raises(ConfigError, match="unknown threatexchange option"):
        source_from_uri(f"threatexchange:{GROUP}?pagesize=3", credentials=creds)
    # A page of TMK indicators is ~351 KB per update: page_size bounds the memory of a page.
    for bad in ("0", "5000"):
        with pytest.raises(ConfigError, match="page_size must be between 1 and 1000"):
            source_from_uri(f"threatexchange:{GROUP}?page_size={bad}", credentials=creds)


def test_updates_without_a_visible_descriptor_are_deleted(
    store: Store, server: LocalServer, te: FakeThreatExchange
) -> None:
    # python-threatexchange (FBThreatExchangeIndicatorRecord.from_threatexchange_json) skips
    # descriptors without an owner and returns None when none is left; fetch_iter stores
    # that None, which deletes the signal. An empty descriptors.data is the same case.
    te.add("HASH_PDQ", PDQ_A, tags=("terrorism",))
    te.add("HASH_MD5", MD5_A)
    _sync(store, server)
    assert set(_entries(store)) == {("pdq", PDQ_A), ("md5", MD5_A)}

    te.add("HASH_PDQ", PDQ_A, descriptors=[])
    te.add("HASH_MD5", MD5_A, descriptors=[descriptor(1, tags=("x",), owner=None)])
    te.add("HASH_MD5", MD5_B, descriptors=[])  # never listed: stays out
    te.add(
        "HASH_SHA256",
        SHA_A,
        descriptors=[
            descriptor(2, tags=("hidden",), status="NON_MALICIOUS", owner=None),
            descriptor(3, tags=("terrorism",)),
        ],
    )
    result = _sync(store, server)
    assert _entries(store) == {("sha256", SHA_A): ("terrorism",)}
    assert (result.added, result.removed) == (1, 2)
    assert result.skipped == {"no visible descriptor (removed, as python-threatexchange does)": 3}


def test_hash_tmk_indicators_sync_and_match_the_video(
    tmp_path: Path, server: LocalServer, te: FakeThreatExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The indicator text of a real video: our hasher's .tmk of a bundled fixture, in the
    # HASH_TMK form ThreatExchange carries it in (12 magic bytes, '|', base64 of the rest).
    listed, other = encode_text(fixture_tmk(CLIP_A)), encode_text(fixture_tmk(CLIP_B))
    te.add("HASH_TMK", listed, tags=("terrorism", "media_type_long_hash_video"))
    te.add("HASH_TMK", other, tags=("violence",))
    te.add("HASH_PDQ", PDQ_A)
    te.add("HASH_TMK", other, delete=True)  # withdrawn again
    monkeypatch.setenv("UPLOADSCAN_THREATEXCHANGE_TOKEN", TOKEN)
    uri = f"threatexchange:{GROUP}?base_url={server.url}/v26.0&page_size=2"
    with Scanner.open(tmp_path / "scanner") as scanner:
        scanner.add_list("gifct", kind="block", source=uri)
        (result,) = scanner.sync()
        # Two updates a page: the second page withdraws a video the first one added.
        assert result.error is None and (result.added, result.removed) == (3, 1)
        assert "HASH_TMK" in server.log[0].query["types"][0].split(",")
        entries = {(e.hash_type, e.external_id): e for e in scanner.store.list_entries("gifct")}
        assert set(entries) == {("tmk", "9001"), ("pdq", "9003")}
        assert entries["tmk", "9001"].value == listed
        assert entries["tmk", "9001"].labels == ("media_type_long_hash_video", "terrorism")

        verdict = scanner.scan(fixture(CLIP_A))
        assert verdict.action is Action.BLOCK, verdict.reasons
        (match,) = [m for m in verdict.matches if m.hash_type == "tmk"]
        assert (match.list_name, match.external_id, match.labels) == (
            "gifct",
            "9001",
            ("media_type_long_hash_video", "terrorism"),
        )
        assert match.evidence is not None
        assert match.evidence["level1"] >= 0.99 and match.evidence["level2"] >= 0.99
        assert scanner.scan(fixture(CLIP_B)).action is Action.ALLOW


def test_malformed_hash_tmk_indicators_fail_the_batch(
    store: Store, server: LocalServer, te: FakeThreatExchange
) -> None:
    te.add("HASH_PDQ", PDQ_A)
    _sync(store, server)
    before = (_entries(store), store.get_list("gifct").checkpoint)
    text = encode_text(fixture_tmk(CLIP_A))
    te.add("HASH_TMK", text[:-8])  # cut short: the header promises more
    with pytest.raises(SyncError, match=r"update \d \(id '9002'\): .*implies"):
        _sync(store, server)
    te.updates[-1]["indicator"] = "TMK1FVECPDQF|" + "A" * 50 + "*"
    with pytest.raises(SyncError, match=r"id '9002'.*base64"):
        _sync(store, server)
    assert (_entries(store), store.get_list("gifct").checkpoint) == before
