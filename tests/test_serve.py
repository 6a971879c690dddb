"""The HTTP sidecar, driven over real sockets: uvicorn on 127.0.0.1, httpx as the client.

The block list holds the reference PDQ of a bundled fixture photo (``pdqhash`` on the full
decode, an implementation independent of ours, computed here by ``tests/_reference.py``) and
the MD5 of another photo's bytes (``hashlib``), so a verdict of "block" proves the whole path:
HTTP body -> hashing -> index -> policy -> JSON. Every test runs on the bundled fixtures
(``tests/fixtures``), so a fresh clone without the extended corpus tests the service too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from _media import fixture
from _reference import reference_pdq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uploadscan import ConfigError, Scanner
from uploadscan.serve import create_app
from uploadscan.serve._run import check_bind, is_loopback, uvicorn_config
from uploadscan.serve._settings import ServeSettings
from uploadscan.store._lists import EntryUpsert, ListSettings

BLOCKED_PDQ_IMAGE = "scene_c.png"  # listed by its reference PDQ
BLOCKED_MD5_IMAGE = "scene_a.jpg"  # listed by the MD5 of its bytes
REVIEW_IMAGE = "scene_b.jpg"  # on a review list by its reference PDQ
CLEAN_IMAGE = "scene_f.png"  # more than 120 bits from each of the listed photos
TOKEN = "s3cret-token-for-tests"


@cache
def reference_hash(name: str) -> str:
    """The PDQ of a bundled fixture by ``pdqhash`` (never by uploadscan)."""
    return reference_pdq(fixture(name))[0]


def flip_bits(hex64: str, n: int) -> str:
    value = int(hex64, 16)
    for bit in range(n):
        value ^= 1 << (bit * 37 % 256)
    return f"{value:064x}"


# ---------------------------------------------------------------------- servers


class Running:
    def __init__(self, server: uvicorn.Server, thread: threading.Thread, port: int) -> None:
        self.server = server
        self.thread = thread
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def start(app: Any, **config_options: Any) -> Running:
    """Run ``app`` as ``uploadscan serve`` runs it (same uvicorn configuration and connection
    handling), on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = {"log_level": "warning", **config_options}
    config = uvicorn_config(app, app.state.service.settings, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "server thread died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return Running(server, thread, port)


def image(name: str) -> bytes:
    """The bytes of a bundled fixture (``tests/fixtures/MANIFEST.md``)."""
    return fixture(name).read_bytes()


def build_home(home: Path) -> Path:
    md5 = hashlib.md5(image(BLOCKED_MD5_IMAGE)).hexdigest()
    with Scanner.open(home) as scanner:
        scanner.add_list("blocked", kind="block", source=None)
        scanner.store.apply_batch(
            "blocked",
            [EntryUpsert("pdq", reference_hash(BLOCKED_PDQ_IMAGE)), EntryUpsert("md5", md5)],
        )
        scanner.add_list("watch", kind="review", source=None)
        scanner.store.apply_batch("watch", [EntryUpsert("pdq", reference_hash(REVIEW_IMAGE))])
    return home


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_home(tmp_path_factory.mktemp("serve-home"))


@pytest.fixture(scope="module")
def server_factory(home: Path) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def make(
        app_home: Path | None = None, config: dict[str, Any] | None = None, **options: Any
    ) -> Running:
        r = start(create_app(app_home or home, **options), **(config or {}))
        running.append(r)
        return r

    yield make
    for r in running:
        r.stop()


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., Running]) -> Running:
    return server_factory()


@pytest.fixture(scope="module")
def client(server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


# ---------------------------------------------------------------------- /v1/scan


def test_scan_raw_body_blocks_listed_photo(client: httpx.Client) -> None:
    r = client.post("/v1/scan", content=image(BLOCKED_PDQ_IMAGE))
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["action"] == "block"
    assert [(m["list"], m["hash_type"]) for m in verdict["matches"]] == [("blocked", "pdq")]
    assert verdict["matches"][0]["distance"] <= 10


def test_scan_md5_listed_photo(client: httpx.Client) -> None:
    data = image(BLOCKED_MD5_IMAGE)
    r = client.post("/v1/scan", content=data, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["action"] == "block"
    assert {m["hash_type"] for m in verdict["matches"]} == {"md5"}
    assert verdict["hashes"]["md5"] == [hashlib.md5(data).hexdigest()]


def test_scan_multipart_file_field(client: httpx.Client) -> None:
    data = image(BLOCKED_PDQ_IMAGE)
    r = client.post(
        "/v1/scan",
        data={"comment": "ignored"},
        files={"file": ("holiday.png", data, "image/png")},
    )
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["action"] == "block"
    assert verdict["hashes"]["sha256"] == [hashlib.sha256(data).hexdigest()]


def test_scan_clean_photo_is_allowed(client: httpx.Client) -> None:
    data = image(CLEAN_IMAGE)
    r = client.post("/v1/scan", content=data)
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["action"] == "allow"
    assert verdict["matches"] == []
    assert verdict["hashes"]["md5"] == [hashlib.md5(data).hexdigest()]


def test_scan_bad_media_is_a_verdict_not_an_http_error(client: httpx.Client) -> None:
    r = client.post("/v1/scan", content=b"\xff\xd8\xff\xe0" + b"not an image at all" * 10)
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["errors"], verdict
    assert verdict["action"] == "review"
    # Bytes that are not media are no error: exact hashes only, then the non-media action.
    other = client.post("/v1/scan", content=b"this is not an image at all" * 10).json()
    assert (other["action"], other["errors"]) == ("allow", [])
    assert "only exact hashes" in " ".join(other["reasons"])


def test_scan_empty_body_is_400(client: httpx.Client) -> None:
    r = client.post("/v1/scan", content=b"")
    assert r.status_code == 400
    assert r.json()["error"] == "empty_body"


def test_scan_multipart_without_file_field_is_400(client: httpx.Client) -> None:
    r = client.post("/v1/scan", files={"upload": ("a.png", b"123", "image/png")})
    assert r.status_code == 400
    assert r.json()["error"] == "missing_file"
    assert "'file'" in r.json()["message"]


@pytest.mark.parametrize("blocked_first", [False, True])
def test_scan_multipart_with_two_file_fields_is_refused(
    client: httpx.Client, blocked_first: bool
) -> None:
    # One request is one upload with one verdict: a second `file` field is refused, whatever
    # its place, rather than scanned or ignored (a benign first part must not carry the rest).
    parts = [
        ("file", ("a.png", image(CLEAN_IMAGE), "image/png")),
        ("file", ("b.png", image(BLOCKED_PDQ_IMAGE), "image/png")),
    ]
    if blocked_first:
        parts.reverse()
    r = client.post("/v1/scan", files=parts)
    assert r.status_code == 400
    assert r.json()["error"] == "multiple_files"
    assert "'file'" in r.json()["message"]


# ---------------------------------------------------------------------- /v1/lookup


def test_lookup_reference_hashes(client: httpx.Client) -> None:
    pdq = reference_hash(BLOCKED_PDQ_IMAGE)
    r = client.post("/v1/lookup", json={"pdq": flip_bits(pdq, 5)})
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["action"] == "block"
    assert verdict["matches"][0]["distance"] == 5

    md5 = hashlib.md5(image(BLOCKED_MD5_IMAGE)).hexdigest()
    r = client.post("/v1/lookup", json={"md5": [md5.upper(), "0" * 32]})
    assert r.status_code == 200
    assert r.json()["action"] == "block"

    r = client.post("/v1/lookup", json={"pdq": reference_hash(CLEAN_IMAGE)})
    assert r.status_code == 200
    assert r.json()["action"] == "allow"


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"pdq": "abc"}, "invalid_hash", "pdq"),
        ({"md5": ["0" * 32, "xyz"]}, "invalid_hash", "md5"),
        ({"pdq": 17}, "invalid_hash", "pdq"),
        ({"photodna": "00"}, "unknown_hash_type", "photodna"),
        ({}, "bad_request", "JSON object"),
        (["pdq"], "bad_request", "JSON object"),
    ],
)
def test_lookup_rejects_bad_bodies(client: httpx.Client, body: Any, code: str, needle: str) -> None:
    r = client.post("/v1/lookup", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == code
    assert needle in r.json()["message"]


def test_lookup_deeply_nested_json_is_400(client: httpx.Client) -> None:
    depth = 100_000  # 200 kB, well under the body limit
    for body in (b"[" * depth + b"]" * depth, b'{"pdq": ' + b"[" * depth + b"]" * depth + b"}"):
        r = client.post("/v1/lookup", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text[:200]
        assert r.json()["error"] == "bad_json"
        assert "nested too deeply" in r.json()["message"]
    assert client.get("/health").status_code == 200


def test_lookup_rejects_invalid_json(client: httpx.Client) -> None:
    r = client.post("/v1/lookup", content=b"{not json")
    assert r.status_code == 400
    assert r.json()["error"] == "bad_json"


# ---------------------------------------------------------------------- pict-rs


def test_pictrs_accepts_clean_and_refuses_blocked(client: httpx.Client) -> None:
    r = client.post(
        "/v1/pictrs/validate",
        content=image(CLEAN_IMAGE),
        headers={"Content-Type": "image/png"},
    )
    assert 200 <= r.status_code < 300
    r = client.post(
        "/v1/pictrs/validate",
        content=image(BLOCKED_PDQ_IMAGE),
        headers={"Content-Type": "image/png"},
    )
    assert r.status_code == 451
    body = r.json()
    assert body["error"] == "blocked"
    assert "blocked" in body["message"]
    assert body["verdict"]["action"] == "block"


#: JPEG magic and then nothing decodable: media that cannot be hashed.
CORRUPT_JPEG = b"\xff\xd8\xff\xe0" + b"not an image at all" * 10
#: No magic of any media type: bytes that are not media.
NOT_MEDIA = b"this is not an image at all" * 10


def test_pictrs_refuses_review_and_unseen_bytes_by_default(client: httpx.Client) -> None:
    # pict-rs publishes whatever it is told to keep: nothing a moderator has not seen.
    r = client.post("/v1/pictrs/validate", content=image(REVIEW_IMAGE))
    assert r.status_code == 451
    assert r.json()["error"] == "review"
    assert r.json()["verdict"]["action"] == "review"
    # pict-rs has decoded these as media; bytes we cannot see as media were matched on their
    # exact hashes only, which is incomplete matching: the fail mode, so refused.
    r = client.post("/v1/pictrs/validate", content=NOT_MEDIA, headers={"Content-Type": "image/png"})
    assert r.status_code == 451, r.text
    verdict = r.json()["verdict"]
    assert verdict["action"] == "review"
    assert any("not media" in reason for reason in verdict["reasons"])
    r = client.post("/v1/pictrs/validate", content=CORRUPT_JPEG)
    assert r.status_code == 451
    assert r.json()["verdict"]["errors"]
    # /v1/scan keeps the library's own rule: bytes that are not media are allowed there.
    assert client.post("/v1/scan", content=NOT_MEDIA).json()["action"] == "allow"


def test_a_listed_file_that_is_not_media_is_blocked_everywhere_and_logged(
    server_factory: Callable[..., Running], tmp_path: Path
) -> None:
    # GIFCT and TCAP share file hashes of PDFs and archives: such a file is blocked on its MD5
    # by /v1/scan and refused by pict-rs, and its decision keeps its SHA-256.
    manifesto = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + b"% manifesto\n" * 300
    home = build_home(tmp_path / "home")
    with Scanner.open(home) as scanner:
        scanner.store.apply_batch(
            "blocked", [EntryUpsert("md5", hashlib.md5(manifesto).hexdigest())]
        )
    s = server_factory(home, fail_mode="allow", pictrs_review="accept")  # the most lenient
    with httpx.Client(base_url=s.url, timeout=30) as c:
        verdict = c.post("/v1/scan", content=manifesto).json()
        assert verdict["action"] == "block", verdict
        assert [m["hash_type"] for m in verdict["matches"]] == ["md5"]
        r = c.post("/v1/pictrs/validate", content=manifesto, headers={"Content-Type": "image/png"})
        assert (r.status_code, r.json()["error"]) == (451, "blocked")
    with Scanner.open(home, audit=False) as scanner:
        logged = scanner.store.decisions()
    assert [d.action.value for d in logged] == ["block", "block"]
    assert {d.sha256 for d in logged} == {hashlib.sha256(manifesto).hexdigest()}


def test_pictrs_review_accept_publishes_review_uploads(
    server_factory: Callable[..., Running],
) -> None:
    s = server_factory(pictrs_review="accept")
    with httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.post("/v1/pictrs/validate", content=image(REVIEW_IMAGE))
        assert r.status_code == 200
        assert r.json()["action"] == "review"
        r = c.post("/v1/pictrs/validate", content=CORRUPT_JPEG)
        assert (r.status_code, r.json()["action"]) == (200, "review")
        r = c.post("/v1/pictrs/validate", content=image(BLOCKED_PDQ_IMAGE))
        assert r.status_code == 451


def test_pictrs_unseen_bytes_follow_the_fail_mode(
    server_factory: Callable[..., Running],
) -> None:
    s = server_factory(fail_mode="allow")
    with httpx.Client(base_url=s.url, timeout=30) as c:
        for body in (NOT_MEDIA, CORRUPT_JPEG):
            r = c.post("/v1/pictrs/validate", content=body)
            assert (r.status_code, r.json()["action"]) == (200, "allow")
    s = server_factory(fail_mode="block")
    with httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.post("/v1/pictrs/validate", content=NOT_MEDIA)
        assert (r.status_code, r.json()["error"]) == (451, "blocked")


def test_pictrs_refusal_status_configurable(server_factory: Callable[..., Running]) -> None:
    s = server_factory(refusal_status=403)
    with httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.post("/v1/pictrs/validate", content=image(REVIEW_IMAGE))
        assert r.status_code == 403
        assert r.json()["error"] == "review"
        r = c.post("/v1/pictrs/validate", content=image(BLOCKED_PDQ_IMAGE))
        assert r.status_code == 403
        r = c.post("/v1/pictrs/validate", content=image(CLEAN_IMAGE))
        assert r.status_code == 200
        assert (
            "403"
            in c.get("/openapi.json").json()["paths"]["/v1/pictrs/validate"]["post"]["responses"]
        )


# ---------------------------------------------------------------------- HMA /m/lookup


def test_hma_lookup_shape(client: httpx.Client) -> None:
    pdq = reference_hash(BLOCKED_PDQ_IMAGE)
    r = client.get("/m/lookup", params={"signal": flip_bits(pdq, 3), "signal_type": "pdq"})
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["blocked"]
    [match] = body["blocked"]
    assert set(match) == {"bank_content_id", "distance"}
    assert isinstance(match["bank_content_id"], int)
    assert match["distance"] == "3"  # HMA renders distances with pretty_str(): a string

    md5 = hashlib.md5(image(BLOCKED_MD5_IMAGE)).hexdigest()
    r = client.get("/m/lookup", params={"signal": md5, "signal_type": "video_md5"})
    assert r.status_code == 200
    assert [m["distance"] for m in r.json()["blocked"]] == ["0"]

    r = client.get("/m/lookup", params={"signal": pdq, "signal_type": "pdq", "banks": "other"})
    assert r.status_code == 200
    assert r.json() == {}

    clean = reference_hash(CLEAN_IMAGE)
    r = client.get("/m/lookup", params={"signal": clean, "signal_type": "pdq"})
    assert r.json() == {}


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"signal": "00", "signal_type": "photodna"}, 400, "No such SignalType 'photodna'"),
        ({"signal": "zz", "signal_type": "pdq"}, 400, "invalid signal: "),
        ({"signal_type": "pdq"}, 400, "Either url or both signal and signal_type are required"),
        ({"url": "http://example.invalid/a.jpg"}, 403, "Hashing is disabled, missing role"),
    ],
)
def test_hma_lookup_errors(
    client: httpx.Client, params: dict[str, str], status: int, message: str
) -> None:
    r = client.get("/m/lookup", params=params)
    assert r.status_code == status
    body = r.json()
    assert list(body) == ["message"]
    assert body["message"].startswith(message)


# ---------------------------------------------------------------------- auth


def test_token_required_accepted_refused(server_factory: Callable[..., Running]) -> None:
    s = server_factory(token=TOKEN)
    data = image(CLEAN_IMAGE)
    with httpx.Client(base_url=s.url, timeout=30) as c:
        assert c.get("/health").status_code == 200  # liveness needs no token
        r = c.post("/v1/scan", content=data)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = c.post("/v1/scan", content=data, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = c.post("/v1/scan", content=data, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
        assert r.json()["action"] == "allow"
        for path in ("/ready", "/metrics", "/openapi.json"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        # Only the endpoints whose callers cannot send headers take ?token=.
        assert c.post("/v1/scan", content=data, params={"token": TOKEN}).status_code == 401
        r = c.post("/v1/pictrs/validate", content=data, params={"token": TOKEN})
        assert r.status_code == 200
        r = c.post("/v1/pictrs/validate", content=data, params={"token": "nope"})
        assert r.status_code == 401
        r = c.get("/m/lookup", params={"signal": "0" * 32, "signal_type": "md5"})
        assert r.status_code == 401
        assert list(r.json()) == ["message"]


def test_non_loopback_bind_needs_token(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    with pytest.raises(ConfigError, match="without a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", TOKEN)
    from uploadscan.serve import serve

    with pytest.raises(ConfigError, match="without a token"):
        serve(tmp_path / "home", host="0.0.0.0", port=0)
    assert not (tmp_path / "home").exists()  # refused before touching anything


def test_cli_serve_refuses_exposed_bind_without_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from uploadscan.cli import _serve

    monkeypatch.delenv("UPLOADSCAN_TOKEN", raising=False)
    parser = argparse.ArgumentParser()
    _serve.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--home", str(tmp_path), "--host", "0.0.0.0"])
    assert (args.host, args.port, args.workers, args.refusal_status) == ("0.0.0.0", 8080, 1, 451)
    with pytest.raises(ConfigError, match="without a token"):
        args.handler(args)


# ---------------------------------------------------------------------- limits


def test_body_limit_413_declared_and_streamed(server_factory: Callable[..., Running]) -> None:
    s = server_factory(max_body_bytes=10_000)
    data = image(CLEAN_IMAGE)
    with httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.post("/v1/scan", content=data)
        assert r.status_code == 413
        assert r.json()["error"] == "body_too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: cut off while streaming
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]

        r = c.post("/v1/scan", content=chunked())
        assert r.status_code == 413
        r = c.post("/v1/scan", files={"file": ("a.png", data, "image/png")})
        assert r.status_code == 413
        r = c.post("/v1/pictrs/validate", content=chunked())
        assert r.status_code == 413
        r = c.post("/v1/scan", content=data[:5000])  # under the limit: scanned (truncated PNG)
        assert r.status_code == 200


def test_saturation_503_with_retry_after(server_factory: Callable[..., Running]) -> None:
    s = server_factory(max_concurrency=1)
    release = threading.Event()
    data = image(CLEAN_IMAGE)

    def slow_body() -> Iterator[bytes]:
        yield data[:1000]
        release.wait(20)
        yield data[1000:]

    results: list[int] = []

    def hold_slot() -> None:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            results.append(c.post("/v1/scan", content=slow_body()).status_code)

    holder = threading.Thread(target=hold_slot)
    holder.start()
    try:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            deadline = time.monotonic() + 10
            while "uploadscan_in_flight_requests" not in c.get("/metrics").text or (
                _gauge(c.get("/metrics").text, "uploadscan_in_flight_requests") < 2
            ):
                assert time.monotonic() < deadline, "the slow request never arrived"
                time.sleep(0.05)
            r = c.post("/v1/scan", content=data)
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"] == "saturated"
            assert c.get("/health").status_code == 200  # the loop stays responsive
    finally:
        release.set()
        holder.join(30)
    assert results == [200]
    with httpx.Client(base_url=s.url, timeout=30) as c:
        assert c.post("/v1/scan", content=data).status_code == 200  # the slot came back
        assert 'reason="saturated"' in c.get("/metrics").text


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_slow_body_times_out_408(server_factory: Callable[..., Running]) -> None:
    s = server_factory(request_timeout=0.5)

    def trickle() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 10
            time.sleep(0.1)

    with httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.post("/v1/scan", content=trickle())
        assert r.status_code == 408
        assert r.json()["error"] == "timeout"


# ---------------------------------------------------------------------- slow senders


def _port(server: Running) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (AssertionError if it does
    not within ``timeout`` seconds)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open: {data[:200]!r}") from None
    except ConnectionResetError:
        pass
    return data


def _json_body(response: bytes) -> Any:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return json.loads(body)


def test_slow_senders_cannot_hold_the_request_slots(server_factory: Callable[..., Running]) -> None:
    # The default settings: 32 request slots, a 60 s request timeout. 32 clients that trickle
    # their bodies take every slot; they must lose them within the receive deadline, not the
    # request timeout, and legitimate scans must get through.
    s = server_factory()
    settings = ServeSettings(home=".")
    slots, grace = settings.max_concurrency, settings.receive_timeout
    assert grace < settings.request_timeout / 4
    head = (
        b"POST /v1/scan HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
    )
    slow = [socket.create_connection(("127.0.0.1", _port(s)), timeout=30) for _ in range(slots)]
    stop = threading.Event()

    def trickle() -> None:  # one byte per client every 0.2 s: 5 B/s
        while not stop.is_set():
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(b"x")
            stop.wait(0.2)

    try:
        for sock in slow:
            sock.sendall(head + b"x" * 100)
        started = time.monotonic()
        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        data = image(CLEAN_IMAGE)
        with httpx.Client(base_url=s.url, timeout=30) as c:
            deadline = time.monotonic() + 10
            while _gauge(c.get("/metrics").text, "uploadscan_in_flight_requests") < slots + 1:
                assert time.monotonic() < deadline, "the slow clients never arrived"
                time.sleep(0.05)
            r = c.post("/v1/scan", content=data)
            assert (r.status_code, r.json()["error"]) == (503, "saturated")  # slots all held
            while (r := c.post("/v1/scan", content=data)).status_code == 503:
                assert time.monotonic() - started < grace + 10, "slow senders still hold slots"
                time.sleep(0.2)
            waited = time.monotonic() - started
            assert r.status_code == 200
            assert r.json()["action"] == "allow"
            assert waited < settings.request_timeout / 2
        stop.set()
        for sock in slow:
            answer = _read_until_closed(sock, 10)
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert b"connection: close" in answer.lower()
            body = _json_body(answer)
            assert body["error"] == "too_slow"
            assert "KiB/s" in body["message"]
    finally:
        stop.set()
        for sock in slow:
            sock.close()


def test_slow_request_headers_are_cut_off(server_factory: Callable[..., Running]) -> None:
    s = server_factory(receive_timeout=1.0)
    address = ("127.0.0.1", _port(s))
    with (
        socket.create_connection(address) as headers_trickled,
        socket.create_connection(address) as silent,
    ):
        started = time.monotonic()
        headers_trickled.sendall(b"POST /v1/scan HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(3):
            headers_trickled.sendall(b"X-Slow: a\r\n")
            time.sleep(0.2)
        answer = _read_until_closed(headers_trickled, 5)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert _json_body(answer)["error"] == "timeout"
        assert time.monotonic() - started < 4
        assert _read_until_closed(silent, 5) == b""  # opened and never used: closed

    # A kept-alive connection: the deadline starts again with the next request's first byte.
    with socket.create_connection(address) as kept_alive:
        kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        kept_alive.settimeout(5)
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += kept_alive.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 "), first
        time.sleep(0.5)
        kept_alive.sendall(b"GET /health HTTP/1.1\r\n")
        started = time.monotonic()
        answer = _read_until_closed(kept_alive, 5)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert 0.5 < time.monotonic() - started < 4
    with httpx.Client(base_url=s.url, timeout=30) as c:  # prompt clients are unaffected
        assert c.get("/health").status_code == 200


def test_client_gone_mid_body_is_counted_not_an_internal_error(client: httpx.Client) -> None:
    def count(text: str, needle: str) -> float:
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if needle in x)

    before = client.get("/metrics").text
    with socket.create_connection(("127.0.0.1", int(client.base_url.port or 0))) as sock:
        sock.sendall(b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    rejected = 'uploadscan_rejected_requests_total{reason="disconnected"'
    while count(client.get("/metrics").text, rejected) == count(before, rejected):
        assert time.monotonic() < deadline, "the disconnect was not counted"
        time.sleep(0.05)
    after = client.get("/metrics").text
    internal, gone = 'route="/v1/scan",status="500"', 'route="/v1/scan",status="499"'
    assert count(after, internal) == count(before, internal)
    assert count(after, gone) == count(before, gone) + 1


# ---------------------------------------------------------------------- health, ready, metrics


def test_health_and_ready(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["problems"]) == ("ready", [])
    assert {x["name"]: x["entry_count"] for x in body["lists"]} == {"blocked": 2, "watch": 1}
    assert {x["sync_state"] for x in body["lists"]} == {"current"}
    assert body["store_version"] >= max(x["version"] for x in body["lists"])


def _problems(c: httpx.Client) -> tuple[int, list[tuple[str | None, str]]]:
    r = c.get("/ready")
    body = r.json()
    assert body["status"] == ("ready" if r.status_code == 200 else "not_ready"), body
    return r.status_code, [(p["list"], p["state"]) for p in body["problems"]]


def test_ready_503_without_any_list(server_factory: Callable[..., Running], tmp_path: Path) -> None:
    s = server_factory(tmp_path / "empty")
    with httpx.Client(base_url=s.url, timeout=30) as c:
        assert _problems(c) == (503, [(None, "no_lists")])
        assert "no hash lists" in c.get("/ready").json()["problems"][0]["message"]
        assert c.get("/health").status_code == 200


def test_ready_503_while_a_block_or_review_list_is_never_synced_or_stale(
    server_factory: Callable[..., Running], tmp_path: Path
) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text("md5 " + "1" * 32 + "\n")
    home = tmp_path / "home"
    with Scanner.open(home) as scanner:
        scanner.add_list("feed", kind="block", source=str(feed))
        scanner.add_list("watch", kind="review", source=str(feed))
        scanner.add_list("trusted", kind="allow", source=str(feed))  # allow lists never count
        scanner.add_list("optional", kind="block", source=str(feed), settings={"warn_only": True})
        s = server_factory(home)
        with httpx.Client(base_url=s.url, timeout=30) as c:
            # Nothing synced yet: every verdict would take the fail mode.
            assert _problems(c) == (503, [("feed", "never_synced"), ("watch", "never_synced")])
            body = c.get("/ready").json()
            assert body["warnings"] == ["list optional has never completed a sync (warn only)"]
            assert "fail mode" in body["problems"][0]["message"]
            verdict = c.post("/v1/lookup", json={"md5": "2" * 32}).json()
            assert verdict["action"] == "review"  # the verdicts agree with /ready

            assert all(result.ok for result in scanner.sync(["feed"]))
            assert _problems(c) == (503, [("watch", "never_synced")])
            assert all(result.ok for result in scanner.sync())
            assert _problems(c) == (200, [])
            states = {x["name"]: x["sync_state"] for x in c.get("/ready").json()["lists"]}
            assert set(states.values()) == {"current"}

            scanner.store.update_settings("watch", ListSettings(max_age_seconds=0.2))
            time.sleep(0.4)
            assert _problems(c) == (503, [("watch", "stale")])
            [watch] = [x for x in c.get("/ready").json()["lists"] if x["name"] == "watch"]
            assert watch["sync_state"] == "stale"
            assert watch["max_age_seconds"] == 0.2
            assert watch["age_seconds"] > 0.2
            assert c.get("/health").status_code == 200


def test_metrics_count_verdicts_and_latency(client: httpx.Client) -> None:
    before = client.get("/metrics").text
    client.post("/v1/scan", content=image(BLOCKED_PDQ_IMAGE))
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")

    def value(t: str, prefix: str) -> float:
        return sum(float(x.rsplit(" ", 1)[1]) for x in t.splitlines() if x.startswith(prefix))

    prefix = 'uploadscan_verdicts_total{route="scan",action="block"'
    assert value(text, prefix) == value(before, prefix) + 1
    assert "# TYPE uploadscan_request_duration_seconds histogram" in text
    [inf] = [
        x
        for x in text.splitlines()
        if x.startswith('uploadscan_request_duration_seconds_bucket{route="/v1/scan",')
        and 'le="+Inf"' in x
    ]
    assert float(inf.rsplit(" ", 1)[1]) >= 1
    assert "uploadscan_in_flight_requests{" in text


# ---------------------------------------------------------------------- errors are JSON


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/v1/nope", 404, "not_found"),
        ("GET", "/v1/scan", 405, "method_not_allowed"),
        ("DELETE", "/v1/lookup", 405, "method_not_allowed"),
        ("POST", "/health", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_methods_are_json_errors(
    client: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    r = client.request(method, path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == code
    assert path in r.json()["message"]
    if status == 405:
        assert method not in r.headers["allow"]


def test_hma_paths_answer_errors_in_hma_shape(client: httpx.Client) -> None:
    for r in (client.get("/m/nope"), client.post("/m/lookup")):
        assert r.status_code in (404, 405)
        assert list(r.json()) == ["message"]


def test_errors_before_the_app_are_json(server_factory: Callable[..., Running]) -> None:
    s = server_factory(config={"limit_concurrency": 3})
    address = ("127.0.0.1", _port(s))
    with socket.create_connection(address) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = _read_until_closed(sock, 5)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert _json_body(answer)["error"] == "bad_request"
    # Over uvicorn's connection limit: the 503 it answers before the app runs.
    idle = [socket.create_connection(address) for _ in range(3)]
    try:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            r = c.get("/health")
            assert r.status_code == 503
            assert r.json()["error"] == "saturated"
            assert r.headers["retry-after"] == "1"
    finally:
        for sock in idle:
            sock.close()
    with httpx.Client(base_url=s.url, timeout=30) as c:
        deadline = time.monotonic() + 5
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


# ---------------------------------------------------------------------- the audit log


def test_lookups_are_recorded_as_lookups_and_as_answered(
    server_factory: Callable[..., Running], tmp_path: Path
) -> None:
    home = build_home(tmp_path / "home")
    s = server_factory(home)
    pdq = reference_hash(BLOCKED_PDQ_IMAGE)
    with httpx.Client(base_url=s.url, timeout=30) as c:
        assert c.post("/v1/scan", content=image(BLOCKED_PDQ_IMAGE)).json()["action"] == "block"
        assert c.post("/v1/lookup", json={"pdq": pdq}).json()["action"] == "block"
        hma = {"signal": pdq, "signal_type": "pdq"}
        assert list(c.get("/m/lookup", params=hma).json()) == ["blocked"]
        # Restricted to lists the hash is not on: answered {}, so recorded as no match.
        assert c.get("/m/lookup", params={**hma, "banks": "watch"}).json() == {}
        assert c.get("/m/lookup", params={**hma, "banks": "no-such-bank"}).json() == {}
        r = c.get("/m/lookup", params={**hma, "banks": "blocked,no-such-bank"})
        assert list(r.json()) == ["blocked"]

    report = subprocess.run(
        [sys.executable, "-m", "uploadscan.cli", "report", "--home", str(home)],
        capture_output=True,
        text=True,
        check=True,
    )
    counts = json.loads(report.stdout)
    assert counts["by_origin"]["upload"] == 1
    assert counts["by_origin"]["lookup"] == 5
    assert counts["total"] == 1  # uploads only: lookups are not flagged uploads
    assert counts["by_action"] == {"allow": 0, "review": 0, "block": 1}
    assert counts["lookups"] == {"allow": 2, "review": 0, "block": 3}
    with Scanner.open(home, audit=False) as scanner:
        lookups = [d for d in scanner.store.decisions() if d.origin.value == "lookup"]
    restricted = [d for d in lookups if d.action.value == "allow"]
    assert [d.matches for d in restricted] == [(), ()]


# ---------------------------------------------------------------------- workers


def test_two_worker_processes_share_one_home(tmp_path: Path) -> None:
    # A data directory of its own, shared only by the two worker processes.
    home = build_home(tmp_path / "home")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import sys; from uploadscan.serve import serve; "
        f"serve({str(home)!r}, port={port}, workers=2, log_level='warning')"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=err)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        pids = set()
        with httpx.Client(base_url=url, timeout=30) as c:
            for _ in range(6):
                r = c.post("/v1/scan", content=image(BLOCKED_PDQ_IMAGE))
                assert r.json()["action"] == "block"
            for _ in range(40):
                with httpx.Client(base_url=url, timeout=30) as fresh:  # new connection each
                    for line in fresh.get("/metrics").text.splitlines():
                        if line.startswith("uploadscan_in_flight_requests{"):
                            pids.add(line.split('pid="')[1].split('"')[0])
                if len(pids) == 2:
                    break
        assert len(pids) == 2, pids
    finally:
        proc.terminate()
        proc.wait(30)


# ---------------------------------------------------------------------- OpenAPI


def test_openapi_document(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"] == "3.1.0"
    ops = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert ops == {
        ("/v1/scan", "post"),
        ("/v1/lookup", "post"),
        ("/v1/pictrs/validate", "post"),
        ("/m/lookup", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    }
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"].rsplit("/", 1)[1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    assert refs <= set(spec["components"]["schemas"])


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, item in spec["paths"].items() for m, op in item.items()]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_hash_names = st.sampled_from(["pdq", "md5", "sha256", "phash", "video_md5", "", "x"])
_lookup_bodies = st.dictionaries(
    _hash_names | st.text(max_size=10),
    st.text(alphabet="0123456789abcdefABCDEFxyz ", max_size=70)
    | st.lists(st.text(alphabet="0123456789abcdef", min_size=30, max_size=66), max_size=3)
    | _json_values,
    max_size=3,
)


@st.composite
def _requests(draw: st.DrawFn, spec: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    path, method, op = draw(st.sampled_from(_operations(spec)))
    kwargs: dict[str, Any] = {}
    params = op.get("parameters", [])
    if params:
        names = [p["name"] for p in params] + ["url", "seed"]
        kwargs["params"] = draw(
            st.dictionaries(
                st.sampled_from(names),
                st.sampled_from(["pdq", "md5", "video_md5", "0" * 64, "0" * 32])
                | st.text(max_size=70),
                max_size=4,
            )
        )
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body = draw(_lookup_bodies | _json_values)
        kwargs["content"] = json.dumps(body).encode()
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif "multipart/form-data" in content and draw(st.booleans()):
        field = draw(st.sampled_from(["file", "other"]))
        kwargs["files"] = {field: ("x.bin", draw(st.binary(max_size=3000)), "image/jpeg")}
    elif content:
        kwargs["content"] = draw(st.binary(max_size=3000))
        kwargs["headers"] = {"Content-Type": draw(st.sampled_from([*content, "text/x"]))}
    return path, method, kwargs


def test_openapi_property_every_status_is_declared_and_none_is_5xx(
    server_factory: Callable[..., Running],
) -> None:
    s = server_factory(max_body_bytes=2500)
    with httpx.Client(base_url=s.url, timeout=30) as c:
        spec = c.get("/openapi.json").json()

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(_requests(spec))
        def check(req: tuple[str, str, dict[str, Any]]) -> None:
            path, method, kwargs = req
            if "headers" in kwargs and kwargs["headers"].get("Content-Type") == "*/*":
                kwargs["headers"] = {"Content-Type": "application/octet-stream"}
            r = c.request(method.upper(), path, **kwargs)
            declared = spec["paths"][path][method]["responses"]
            assert str(r.status_code) in declared, (path, r.status_code, r.text[:300])
            assert r.status_code < 500 or r.status_code == 503, (path, r.status_code)
            assert r.status_code != 503 or path == "/ready", (path, r.text[:300])
            if r.headers.get("content-type", "").startswith("application/json"):
                r.json()

        check()
