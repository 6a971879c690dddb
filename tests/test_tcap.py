"""TCAP source against a local server answering with TCAP's recorded hash-list v2 JSON.

The fake's pages are built from the responses recorded in python-threatexchange's TCAP client
tests (``RECORDED_PAGE`` below): the same top-level fields, the same result fields and value
types, ``ideology`` as delivered (``Far-Right``), and ``next`` an absolute URL on another host
(``dev.terrorismanalytics.org``) that a client must never follow. The fake honours what the
client sends: ``POST token-auth/tcap/`` -> ``{"token"}``; ``GET api/hash-list/v2/all?order=asc&
after=<checkpoint>`` with ``Authorization: Bearer``, ``after`` selecting the records whose
``(updated_on, id)`` come after the checkpoint ``"<updated_on>,<id>"`` (keyset paging), and
``count`` the number of those records.
"""

from __future__ import annotations

import copy
import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _local_http import LocalServer, Reply, Request

from uploadscan import ConfigError, SyncError
from uploadscan.hashtypes import Md5HashType, PdqHashType, Sha256HashType
from uploadscan.store._lists import ListKind
from uploadscan.store._store import Store
from uploadscan.sync import Credentials, HttpOptions, source_from_uri, sync_list

PDQ_A, PDQ_B = PdqHashType.example_values
MD5_A, MD5_B = Md5HashType.example_values
SHA_A, SHA_B = Sha256HashType.example_values
TOKEN = "tcap-secret-token-7f3a"
FAST = HttpOptions(timeout=2.0, deadline=10.0, retries=1, backoff=0.01)

# One page of GET api/hash-list/v2/all as recorded in facebook/ThreatExchange,
# python-threatexchange/threatexchange/exchanges/clients/techagainstterrorism/tests/
# test_api.py, mock_fetch_hashes() (commits a41a6131 to 4e5fc8fe, December 2024), reproduced
# exactly. Its hash_digest values are placeholders, not hashes.
RECORDED_PAGE: dict[str, Any] = {
    "count": 100,
    "next": "http://dev.terrorismanalytics.org/hash-list/v2/all?limit=1000&offset=1000&order=asc",
    "previous": None,
    "checkpoint": "1724856487.709035,10594",
    "results": [
        {
            "hash_digest": "123abc",
            "algorithm": "MD5",
            "ideology": "Far-Right",
            "file_type": "mp4",
            "deleted": False,
            "updated_on": 1704901040.222779,
            "id": 2819,
        },
        {
            "hash_digest": "456def",
            "algorithm": "SHA256",
            "ideology": "Islamist",
            "file_type": "mp4",
            "deleted": False,
            "updated_on": 1704901040.24492,
            "id": 2820,
        },
        {
            "hash_digest": "456def",
            "algorithm": "PDQ",
            "ideology": "Islamist",
            "file_type": "png",
            "deleted": False,
            "updated_on": 1704901040.24496,
            "id": 2821,
        },
    ],
}
# Results gained created_on later; the same test file recorded its value as this string when
# the field was added (commit 2a49a59c, March 2025).
RECORDED_CREATED_ON = "2025-03-03 23:05:22,587"
# The shape of the recorded next URL: another host, plain http, offset paging of 1000.
NEXT_URL = (
    "http://dev.terrorismanalytics.org/hash-list/v2/all?limit={limit}&offset={limit}&order=asc"
)


def recorded_result(index: int, digest: str) -> dict[str, Any]:
    """Recorded result ``index`` with a real digest in place of the placeholder."""
    record = copy.deepcopy(RECORDED_PAGE["results"][index])
    record["hash_digest"] = digest
    record["created_on"] = RECORDED_CREATED_ON
    return record


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
        ideology: str = "Islamist",
    ) -> dict[str, Any]:
        """A record shaped like the recorded ones, updated after every earlier record."""
        last = self.records[-1] if self.records else RECORDED_PAGE["results"][-1]
        record = {
            "hash_digest": digest,
            "algorithm": algorithm,
            "ideology": ideology,
            "file_type": file_type,
            "deleted": deleted,
            "updated_on": round(last["updated_on"] + 0.011071, 6),
            "created_on": RECORDED_CREATED_ON,
            "id": last["id"] + 1,
        }
        self.records.append(record)
        return record

    def auth(self, req: Request) -> Reply:
        form = urllib.parse.parse_qs(req.body.decode())
        if req.method != "POST" or form.get("password") != ["pw"]:
            return Reply(400, b'{"error": "bad credentials"}')
        return Reply(200, json.dumps({"token": TOKEN}).encode())

    def page(self, after: str) -> dict[str, Any]:
        key = (float(after.split(",")[0]), int(after.split(",")[1])) if after else (0.0, 0)
        rest = [r for r in self.records if (r["updated_on"], r["id"]) > key]
        page = rest[: self.page_size]
        return {
            "count": len(rest),
            "next": NEXT_URL.format(limit=self.page_size) if len(rest) > len(page) else None,
            "previous": None,  # every keyset request is the first page of what follows
            # An empty page's checkpoint was never recorded; python-threatexchange keeps
            # the previous one when it is empty, so the fake sends null.
            "checkpoint": f"{page[-1]['updated_on']},{page[-1]['id']}" if page else None,
            "results": page,
        }

    def hash_list(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {TOKEN}":
            return Reply(401, b'{"detail": "Invalid token."}')
        after = req.query.get("after", [""])[0]
        if self.fail_after is not None and after == self.fail_after:
            return Reply(500, b"oops")
        return Reply(200, json.dumps(self.page(after)).encode())


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


def _checkpoint(record: dict[str, Any]) -> str:
    return f"{record['updated_on']},{record['id']}"


def test_fake_pages_reproduce_the_recorded_response(tcap: FakeTcap) -> None:
    tcap.page_size = 3
    tcap.records = [recorded_result(0, MD5_A), recorded_result(1, SHA_A), recorded_result(2, PDQ_A)]
    tcap.add(MD5_B, "MD5", "mp4")  # one more, so that the page has a next
    page = tcap.page("")
    assert list(page) == list(RECORDED_PAGE)
    assert {k: type(v) for k, v in page.items() if k != "next"} == {
        k: type(v) for k, v in RECORDED_PAGE.items() if k != "next"
    }
    assert urllib.parse.urlsplit(page["next"]).netloc == "dev.terrorismanalytics.org"
    assert page["next"] == RECORDED_PAGE["next"].replace("1000", "3")
    for got, recorded in zip(page["results"], RECORDED_PAGE["results"], strict=True):
        assert {k: v for k, v in got.items() if k not in ("hash_digest", "created_on")} == {
            k: v for k, v in recorded.items() if k != "hash_digest"
        }
    assert page["checkpoint"] == "1704901040.24496,2821"


def test_pages_by_checkpoint_and_never_follows_next(
    store: Store, server: LocalServer, tcap: FakeTcap
) -> None:
    # The recorded records, then more of the same shape: five pages of two.
    tcap.records = [recorded_result(0, MD5_A), recorded_result(1, SHA_A), recorded_result(2, PDQ_A)]
    tcap.add(PDQ_B, "PDQ", "jpg", ideology="Far-Right")
    tcap.add("ab" * 64, "SHA512", "mp4")
    tcap.add(SHA_B, "SHA256", "webm")
    tcap.add(MD5_B, "MD5", "gif")
    tcap.add(MD5_A, "MD5", "mp4", deleted=True)
    tcap.add(MD5_A, "MD5", "MP4", ideology="Far-Right")
    result = _sync(store, server)

    assert _entries(store) == {
        ("md5", MD5_A): ("file_type:MP4", "ideology:Far-Right", "video"),
        ("sha256", SHA_A): ("file_type:mp4", "ideology:Islamist", "video"),
        ("pdq", PDQ_A): ("file_type:png", "ideology:Islamist"),
        ("pdq", PDQ_B): ("file_type:jpg", "ideology:Far-Right"),
        ("sha256", SHA_B): ("file_type:webm", "ideology:Islamist", "video"),
        ("md5", MD5_B): ("file_type:gif", "ideology:Islamist"),
    }
    assert result.skipped == {"sha512 (no such hash type)": 1}
    # Every page came from the configured host's endpoint, asking for what follows the
    # previous page's checkpoint; the 'next' URLs on the other host were never requested.
    assert {r.path for r in server.log} == {"/api/hash-list/v2/all"}
    pages = [tcap.records[i : i + 2] for i in range(0, len(tcap.records), 2)]
    expected_after = ["", *(_checkpoint(p[-1]) for p in pages[:-1])]
    assert [r.query["after"] for r in server.log] == [[a] for a in expected_after]
    assert all(r.query["order"] == ["asc"] for r in server.log)
    assert result.batches == len(pages)
    assert store.get_list("tcap").checkpoint == _checkpoint(tcap.records[-1])
    assert store.get_list("tcap").last_sync is not None


def test_full_then_incremental_sync(store: Store, server: LocalServer, tcap: FakeTcap) -> None:
    tcap.add(PDQ_A, "PDQ", "jpg")
    tcap.add(MD5_A, "MD5", "mp4", ideology="Far-Right")
    tcap.add(SHA_A, "SHA256", "png")
    tcap.add("ab" * 64, "SHA512", "mp4")
    tcap.add(MD5_B, "MD5", "gif")
    result = _sync(store, server)
    assert _entries(store) == {
        ("pdq", PDQ_A): ("file_type:jpg", "ideology:Islamist"),
        ("md5", MD5_A): ("file_type:mp4", "ideology:Far-Right", "video"),
        ("sha256", SHA_A): ("file_type:png", "ideology:Islamist"),
        ("md5", MD5_B): ("file_type:gif", "ideology:Islamist"),
    }
    assert result.skipped == {"sha512 (no such hash type)": 1}
    assert result.batches == 3
    last = tcap.records[-1]
    assert store.get_list("tcap").checkpoint == _checkpoint(last)

    tcap.add(MD5_A, "MD5", "mp4", deleted=True)
    tcap.add(SHA_B, "SHA256", "jpg")
    server.log.clear()
    second = _sync(store, server)
    assert (second.added, second.removed) == (1, 1)
    assert ("md5", MD5_A) not in _entries(store) and ("sha256", SHA_B) in _entries(store)
    first_query = server.log[0].query
    assert first_query["order"] == ["asc"]
    assert first_query["after"] == [_checkpoint(last)]

    server.log.clear()  # nothing new: one page, empty, checkpoint kept
    third = _sync(store, server)
    assert third.added == third.removed == 0 and len(server.log) == 1
    assert store.get_list("tcap").checkpoint == _checkpoint(tcap.records[-1])


def test_recorded_page_with_placeholder_digests_fails_closed(
    store: Store, server: LocalServer
) -> None:
    server.routes["/token-auth/tcap/"] = lambda req: Reply(200, b'{"token": "t"}')
    server.routes["/api/hash-list/v2/all"] = lambda req: Reply(
        200, json.dumps(RECORDED_PAGE).encode()
    )
    creds = Credentials.discover(environ={"UPLOADSCAN_TCAP_CREDENTIALS": "alice:pw"})
    with pytest.raises(SyncError, match=r"result 0 \(id 2819\): .*md5") as info:
        _sync(store, server, creds)
    assert "another host" not in str(info.value)
    assert _entries(store) == {} and store.get_list("tcap").checkpoint is None
    assert [r.path for r in server.log] == ["/token-auth/tcap/", "/api/hash-list/v2/all"]


def test_interrupted_sync_resumes_from_last_page(
    store: Store, server: LocalServer, tcap: FakeTcap
) -> None:
    for value in (PDQ_A, PDQ_B):
        tcap.add(value, "PDQ", "jpg")
    for value in (MD5_A, MD5_B):
        tcap.add(value, "MD5", "jpg")
    page_one = _checkpoint(tcap.records[1])
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


def test_a_page_that_does_not_move_the_checkpoint_is_an_error_not_a_loop(
    store: Store, server: LocalServer, tcap: FakeTcap
) -> None:
    stuck = tcap.add(PDQ_A, "PDQ", "jpg")

    def same_page_forever(req: Request) -> Reply:
        body = dict(RECORDED_PAGE, checkpoint=_checkpoint(stuck), results=[stuck])
        return Reply(200, json.dumps(body).encode())

    server.routes["/api/hash-list/v2/all"] = same_page_forever
    with pytest.raises(SyncError, match="did not move the checkpoint"):
        _sync(store, server)
    assert len(server.log) == 2  # the first page, then the one that did not move
    assert store.get_list("tcap").last_sync is None
