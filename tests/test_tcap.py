"""TCAP source against a local server speaking TCAP's hash-list v2 wire format.

The fake follows python-threatexchange's TCAP client (exchanges/clients/techagainstterrorism/
api.py): ``POST token-auth/tcap/`` -> ``{"token"}``; ``GET api/hash-list/v2/all?order=asc&
after=<checkpoint>`` with ``Authorization: Bearer``; pages of ``{count, next, previous,
checkpoint, results}``, each result with hash_digest, algorithm, ideology, file_type, deleted,
updated_on, created_on and id; checkpoint "<updated_on>,<id>" of the page's last record.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _local_http import LocalServer, Reply, Request

from uploadscan._errors import ConfigError, SyncError
from uploadscan.hashtypes import Md5HashType, PdqHashType, Sha256HashType
from uploadscan.store._lists import ListKind
from uploadscan.store._store import Store
from uploadscan.sync import Credentials, HttpOptions, source_from_uri, sync_list

PDQ_A, PDQ_B = PdqHashType.example_values
MD5_A, MD5_B = Md5HashType.example_values
SHA_A, SHA_B = Sha256HashType.example_values
TOKEN = "tcap-secret-token-7f3a"
FAST = HttpOptions(timeout=2.0, deadline=10.0, retries=1, backoff=0.01)


class FakeTcap:
    def __init__(self, server: LocalServer, page_size: int = 2) -> None:
        self.server = server
        self.records: list[dict[str, Any]] = []
        self.page_size = page_size
        self.fail_after: str | None = None  # fail pages requested with this 'after'
        server.routes["/api/hash-list/v2/all"] = self.hash_list
        server.routes["/token-auth/tcap/"] = self.auth

    def add(
        self,
        digest: str,
        algorithm: str,
        file_type: str,
        *,
        deleted: bool = False,
        ideology: str = "islamist",
    ) -> None:
        n = len(self.records) + 1
        self.records.append(
            {
                "hash_digest": digest,
                "algorithm": algorithm,
                "ideology": ideology,
                "file_type": file_type,
                "deleted": deleted,
                "updated_on": 1704901040.0 + n,
                "created_on": "2025-03-03 23:05:22,587",
                "id": 2800 + n,
            }
        )

    def auth(self, req: Request) -> Reply:
        form = urllib.parse.parse_qs(req.body.decode())
        if req.method != "POST" or form.get("password") != ["pw"]:
            return Reply(400, b'{"error": "bad credentials"}')
        return Reply(200, json.dumps({"token": TOKEN}).encode())

    def hash_list(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {TOKEN}":
            return Reply(401, b'{"detail": "Invalid token."}')
        after = req.query.get("after", [""])[0]
        if self.fail_after is not None and after == self.fail_after:
            return Reply(500, b"oops")
        key = tuple(float(x) for x in after.split(",")) if after else (0.0, 0.0)
        rest = [r for r in self.records if (r["updated_on"], r["id"]) > key]
        page = rest[: self.page_size]
        checkpoint = f"{page[-1]['updated_on']},{page[-1]['id']}" if page else after
        more = len(rest) > len(page)
        nxt = f"{self.server.url}/api/hash-list/v2/all?order=asc&after={checkpoint}"
        body = {
            "count": len(rest),
            "next": nxt if more else None,
            "previous": None,
            "checkpoint": checkpoint,
            "results": page,
        }
        return Reply(200, json.dumps(body).encode())


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as s:
        yield s


@pytest.fixture
def tcap(server: LocalServer) -> FakeTcap:
    return FakeTcap(server)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "home" / "store.db") as s:
        yield s


def _source(server: LocalServer, creds: Credentials | None = None) -> Any:
    creds = creds or Credentials.discover(environ={"UPLOADSCAN_TCAP_TOKEN": TOKEN})
    return source_from_uri(f"tcap:?base_url={server.url}/", credentials=creds, http_options=FAST)


def _sync(store: Store, server: LocalServer, creds: Credentials | None = None) -> Any:
    if "tcap" not in {hl.name for hl in store.lists()}:
        store.add_list("tcap", kind=ListKind.BLOCK, source=f"tcap:?base_url={server.url}/")
    return sync_list(store, "tcap", source=_source(server, creds))


def _entries(store: Store) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(e.hash_type, e.value): e.labels for e in store.list_entries("tcap")}


def test_full_then_incremental_sync(store: Store, server: LocalServer, tcap: FakeTcap) -> None:
    tcap.add(PDQ_A, "PDQ", "jpg")
    tcap.add(MD5_A, "MD5", "mp4", ideology="far-right")
    tcap.add(SHA_A, "SHA256", "png")
    tcap.add("ab" * 64, "SHA512", "mp4")
    tcap.add(MD5_B, "MD5", "gif")
    result = _sync(store, server)
    assert _entries(store) == {
        ("pdq", PDQ_A): ("file_type:jpg", "ideology:islamist"),
        ("md5", MD5_A): ("file_type:mp4", "ideology:far-right", "video"),
        ("sha256", SHA_A): ("file_type:png", "ideology:islamist"),
        ("md5", MD5_B): ("file_type:gif", "ideology:islamist"),
    }
    assert result.skipped == {"sha512 (no such hash type)": 1}
    assert result.batches == 3
    last = tcap.records[-1]
    assert store.get_list("tcap").checkpoint == f"{last['updated_on']},{last['id']}"

    tcap.add(MD5_A, "MD5", "mp4", deleted=True)
    tcap.add(SHA_B, "SHA256", "jpg")
    server.log.clear()
    second = _sync(store, server)
    assert (second.added, second.removed) == (1, 1)
    assert ("md5", MD5_A) not in _entries(store) and ("sha256", SHA_B) in _entries(store)
    first_query = server.log[0].query
    assert first_query["order"] == ["asc"]
    assert first_query["after"] == [f"{last['updated_on']},{last['id']}"]


def test_interrupted_sync_resumes_from_last_page(
    store: Store, server: LocalServer, tcap: FakeTcap
) -> None:
    for value in (PDQ_A, PDQ_B):
        tcap.add(value, "PDQ", "jpg")
    for value in (MD5_A, MD5_B):
        tcap.add(value, "MD5", "jpg")
    page_one = f"{tcap.records[1]['updated_on']},{tcap.records[1]['id']}"
    tcap.fail_after = page_one
    with pytest.raises(SyncError, match="HTTP 500"):
        _sync(store, server)
    assert set(_entries(store)) == {("pdq", PDQ_A), ("pdq", PDQ_B)}
    assert store.get_list("tcap").checkpoint == page_one
    assert store.get_list("tcap").last_sync is None  # a half sync is not a sync

    tcap.fail_after = None
    server.log.clear()
    result = _sync(store, server)
    assert result.added == 2 and len(_entries(store)) == 4
    assert server.log[0].query["after"] == [page_one]
    assert store.get_list("tcap").last_sync is not None


def test_username_password_login(store: Store, server: LocalServer, tcap: FakeTcap) -> None:
    tcap.add(PDQ_A, "PDQ", "jpg")
    creds = Credentials.discover(environ={"UPLOADSCAN_TCAP_CREDENTIALS": "alice:pw"})
    _sync(store, server, creds)
    assert ("pdq", PDQ_A) in _entries(store)
    login = [r for r in server.log if r.path == "/token-auth/tcap/"]
    assert login and login[0].method == "POST"
    assert urllib.parse.parse_qs(login[0].body.decode())["username"] == ["alice"]

    bad = Credentials.discover(environ={"UPLOADSCAN_TCAP_CREDENTIALS": "alice:wrong"})
    with pytest.raises(SyncError, match="HTTP 400") as info:
        _sync(store, server, bad)
    assert "wrong" not in str(info.value)


def test_secrets_stay_out_of_errors_and_reprs(
    store: Store, server: LocalServer, tcap: FakeTcap
) -> None:
    wrong = "wrong-token-51c9"
    creds = Credentials.discover(environ={"UPLOADSCAN_TCAP_TOKEN": wrong})
    source = _source(server, creds)
    for text in (repr(creds), str(creds), repr(source), source.description):
        assert wrong not in text
    with pytest.raises(SyncError, match="HTTP 401") as info:
        list(source.fetch(None))
    assert wrong not in str(info.value) and wrong not in repr(info.value)
    with pytest.raises(ConfigError, match="TCAP needs credentials"):
        source_from_uri("tcap:", credentials=Credentials())


def test_credentials_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"tcap": {"token": TOKEN}}), encoding="utf-8")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="accessible by group or others") as info:
        Credentials.discover(tmp_path, environ={})
    assert TOKEN not in str(info.value)
    os.chmod(path, 0o600)
    creds = Credentials.discover(tmp_path, environ={})
    assert creds.tcap_token is not None and creds.tcap_token.reveal() == TOKEN
    assert TOKEN not in repr(creds)
    path.write_text('{"tcap": {"token": "' + TOKEN, encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        Credentials.discover(tmp_path, environ={})
    assert TOKEN not in str(info.value)


def test_next_page_on_another_host_is_refused(
    store: Store, server: LocalServer, tcap: FakeTcap
) -> None:
    def evil(req: Request) -> Reply:
        body = {
            "count": 1,
            "next": "http://localhost:1/api/hash-list/v2/all?after=x",
            "previous": None,
            "checkpoint": "1,1",
            "results": [],
        }
        return Reply(200, json.dumps(body).encode())

    server.routes["/api/hash-list/v2/all"] = evil
    with pytest.raises(SyncError, match="another host"):
        _sync(store, server)
