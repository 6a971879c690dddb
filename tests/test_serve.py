"""The HTTP sidecar, driven over real sockets: uvicorn on 127.0.0.1, httpx as the client.

The block list holds the reference PDQ of a real photo (``expected_computed``: pdqhash on the
full decode, an implementation independent of ours) and the MD5 of another photo's bytes
(``hashlib``), so a verdict of "block" proves the whole path: HTTP body -> hashing -> index ->
policy -> JSON.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uploadscan import ConfigError, Scanner
from uploadscan.serve import create_app
from uploadscan.serve._run import check_bind, is_loopback
from uploadscan.store._lists import EntryUpsert, ListSettings

BLOCKED_PDQ_IMAGE = "kodak/kodim01.png"  # listed by its reference PDQ
BLOCKED_MD5_IMAGE = "kodak/kodim04.png"  # listed by the MD5 of its bytes
REVIEW_IMAGE = "kodak/kodim03.png"  # on a review list by its reference PDQ
CLEAN_IMAGE = "kodak/kodim02.png"
TOKEN = "s3cret-token-for-tests"


def table_pdq(data_dir: Path, rel: str) -> str:
    with open(data_dir / "expected_computed" / "images_pdq_imagehash.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["file"] == rel:
                return row["pdq"]
    raise AssertionError(f"{rel} has no reference PDQ")


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


def start(app: Any) -> Running:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, ws="none", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "server thread died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return Running(server, thread, port)


def build_home(home: Path, data_dir: Path) -> Path:
    md5 = hashlib.md5((data_dir / BLOCKED_MD5_IMAGE).read_bytes()).hexdigest()
    with Scanner.open(home) as scanner:
        scanner.add_list("blocked", kind="block", source=None)
        scanner.store.apply_batch(
            "blocked",
            [
                EntryUpsert("pdq", table_pdq(data_dir, BLOCKED_PDQ_IMAGE)),
                EntryUpsert("md5", md5),
            ],
        )
        scanner.add_list("watch", kind="review", source=None)
        scanner.store.apply_batch("watch", [EntryUpsert("pdq", table_pdq(data_dir, REVIEW_IMAGE))])
    return home


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return build_home(tmp_path_factory.mktemp("serve-home"), data_dir)


@pytest.fixture(scope="module")
def server_factory(home: Path) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def make(app_home: Path | None = None, **options: Any) -> Running:
        r = start(create_app(app_home or home, **options))
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


def image(data_dir: Path, rel: str) -> bytes:
    return (data_dir / rel).read_bytes()


# ---------------------------------------------------------------------- /v1/scan


def test_scan_raw_body_blocks_listed_photo(client: httpx.Client, data_dir: Path) -> None:
    r = client.post("/v1/scan", content=image(data_dir, BLOCKED_PDQ_IMAGE))
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["action"] == "block"
    assert [(m["list"], m["hash_type"]) for m in verdict["matches"]] == [("blocked", "pdq")]
    assert verdict["matches"][0]["distance"] <= 10


def test_scan_md5_listed_photo(client: httpx.Client, data_dir: Path) -> None:
    data = image(data_dir, BLOCKED_MD5_IMAGE)
    r = client.post("/v1/scan", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["action"] == "block"
    assert {m["hash_type"] for m in verdict["matches"]} == {"md5"}
    assert verdict["hashes"]["md5"] == [hashlib.md5(data).hexdigest()]


def test_scan_multipart_file_field(client: httpx.Client, data_dir: Path) -> None:
    data = image(data_dir, BLOCKED_PDQ_IMAGE)
    r = client.post(
        "/v1/scan",
        data={"comment": "ignored"},
        files={"file": ("holiday.png", data, "image/png")},
    )
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["action"] == "block"
    assert verdict["hashes"]["sha256"] == [hashlib.sha256(data).hexdigest()]


def test_scan_clean_photo_is_allowed(client: httpx.Client, data_dir: Path) -> None:
    data = image(data_dir, CLEAN_IMAGE)
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


# ---------------------------------------------------------------------- /v1/lookup


def test_lookup_reference_hashes(client: httpx.Client, data_dir: Path) -> None:
    pdq = table_pdq(data_dir, BLOCKED_PDQ_IMAGE)
    r = client.post("/v1/lookup", json={"pdq": flip_bits(pdq, 5)})
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["action"] == "block"
    assert verdict["matches"][0]["distance"] == 5

    md5 = hashlib.md5(image(data_dir, BLOCKED_MD5_IMAGE)).hexdigest()
    r = client.post("/v1/lookup", json={"md5": [md5.upper(), "0" * 32]})
    assert r.status_code == 200
    assert r.json()["action"] == "block"

    r = client.post("/v1/lookup", json={"pdq": table_pdq(data_dir, CLEAN_IMAGE)})
    assert r.status_code == 200
    assert r.json()["action"] == "allow"


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"pdq": "abc"}, "invalid_hash", "pdq"),
        ({"md5": ["0" * 32, "xyz"]}, "invalid_hash", "md5"),
        ({"pdq": 17}, "invalid_hash", "pdq"),
        ({"tmk": "00"}, "unknown_hash_type", "tmk"),
        ({}, "bad_request", "JSON object"),
        (["pdq"], "bad_request", "JSON object"),
    ],
)
def test_lookup_rejects_bad_bodies(client: httpx.Client, body: Any, code: str, needle: str) -> None:
    r = client.post("/v1/lookup", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == code
    assert needle in r.json()["message"]


def test_lookup_rejects_invalid_json(client: httpx.Client) -> None:
    r = client.post("/v1/lookup", content=b"{not json")
    assert r.status_code == 400
    assert r.json()["error"] == "bad_json"


# ---------------------------------------------------------------------- pict-rs


def test_pictrs_accepts_clean_and_refuses_blocked(client: httpx.Client, data_dir: Path) -> None:
    r = client.post(
        "/v1/pictrs/validate",
        content=image(data_dir, CLEAN_IMAGE),
        headers={"Content-Type": "image/png"},
    )
    assert 200 <= r.status_code < 300
    r = client.post(
        "/v1/pictrs/validate",
        content=image(data_dir, BLOCKED_PDQ_IMAGE),
        headers={"Content-Type": "image/png"},
    )
    assert r.status_code == 451
    body = r.json()
    assert body["error"] == "blocked"
    assert "blocked" in body["message"]
    assert body["verdict"]["action"] == "block"


def test_pictrs_review_accepted_by_default(client: httpx.Client, data_dir: Path) -> None:
    r = client.post("/v1/pictrs/validate", content=image(data_dir, REVIEW_IMAGE))
    assert 200 <= r.status_code < 300
    assert r.json()["action"] == "review"


def test_pictrs_refusal_status_and_review_refusal_configurable(
    server_factory: Callable[..., Running], data_dir: Path
) -> None:
    s = server_factory(refusal_status=403, review_accepts=False)
    with httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.post("/v1/pictrs/validate", content=image(data_dir, REVIEW_IMAGE))
        assert r.status_code == 403
        assert r.json()["error"] == "review"
        r = c.post("/v1/pictrs/validate", content=image(data_dir, BLOCKED_PDQ_IMAGE))
        assert r.status_code == 403
        r = c.post("/v1/pictrs/validate", content=image(data_dir, CLEAN_IMAGE))
        assert r.status_code == 200
        assert (
            "403"
            in c.get("/openapi.json").json()["paths"]["/v1/pictrs/validate"]["post"]["responses"]
        )


# ---------------------------------------------------------------------- HMA /m/lookup


def test_hma_lookup_shape(client: httpx.Client, data_dir: Path) -> None:
    pdq = table_pdq(data_dir, BLOCKED_PDQ_IMAGE)
    r = client.get("/m/lookup", params={"signal": flip_bits(pdq, 3), "signal_type": "pdq"})
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["blocked"]
    [match] = body["blocked"]
    assert set(match) == {"bank_content_id", "distance"}
    assert isinstance(match["bank_content_id"], int)
    assert match["distance"] == "3"  # HMA renders distances with pretty_str(): a string

    md5 = hashlib.md5(image(data_dir, BLOCKED_MD5_IMAGE)).hexdigest()
    r = client.get("/m/lookup", params={"signal": md5, "signal_type": "video_md5"})
    assert r.status_code == 200
    assert [m["distance"] for m in r.json()["blocked"]] == ["0"]

    r = client.get("/m/lookup", params={"signal": pdq, "signal_type": "pdq", "banks": "other"})
    assert r.status_code == 200
    assert r.json() == {}

    clean = table_pdq(data_dir, CLEAN_IMAGE)
    r = client.get("/m/lookup", params={"signal": clean, "signal_type": "pdq"})
    assert r.json() == {}


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"signal": "00", "signal_type": "tmk"}, 400, "No such SignalType 'tmk'"),
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


def test_token_required_accepted_refused(
    server_factory: Callable[..., Running], data_dir: Path
) -> None:
    s = server_factory(token=TOKEN)
    data = image(data_dir, CLEAN_IMAGE)
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


def test_body_limit_413_declared_and_streamed(
    server_factory: Callable[..., Running], data_dir: Path
) -> None:
    s = server_factory(max_body_bytes=10_000)
    data = image(data_dir, CLEAN_IMAGE)
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


def test_saturation_503_with_retry_after(
    server_factory: Callable[..., Running], data_dir: Path
) -> None:
    s = server_factory(max_concurrency=1)
    release = threading.Event()
    data = image(data_dir, CLEAN_IMAGE)

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


# ---------------------------------------------------------------------- health, ready, metrics


def test_health_and_ready(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert {x["name"]: x["entry_count"] for x in body["lists"]} == {"blocked": 2, "watch": 1}
    assert body["store_version"] >= max(x["version"] for x in body["lists"])


def test_ready_503_when_a_list_is_older_than_its_max_age(
    server_factory: Callable[..., Running], tmp_path: Path, data_dir: Path
) -> None:
    with Scanner.open(tmp_path) as scanner:
        scanner.add_list("feed", kind="block", settings={"max_age_seconds": 3600})
        scanner.store.apply_batch("feed", [EntryUpsert("md5", "1" * 32)])  # marks it synced
        s = server_factory(tmp_path)
        with httpx.Client(base_url=s.url, timeout=30) as c:
            r = c.get("/ready")
            assert r.status_code == 200, r.text
            assert r.json()["lists"][0]["stale"] is False
            scanner.store.update_settings("feed", ListSettings(max_age_seconds=0.2))
            time.sleep(0.4)
            r = c.get("/ready")
            assert r.status_code == 503
            body = r.json()
            assert body["status"] == "stale"
            assert body["stale_lists"] == ["feed"]
            assert body["lists"][0]["age_seconds"] > 0.2
            assert c.get("/health").status_code == 200


def test_metrics_count_verdicts_and_latency(client: httpx.Client, data_dir: Path) -> None:
    before = client.get("/metrics").text
    client.post("/v1/scan", content=image(data_dir, BLOCKED_PDQ_IMAGE))
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


# ---------------------------------------------------------------------- workers


def test_two_worker_processes_share_one_home(data_dir: Path, tmp_path: Path) -> None:
    # A data directory of its own, shared only by the two worker processes.
    home = build_home(tmp_path / "home", data_dir)
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
                r = c.post("/v1/scan", content=image(data_dir, BLOCKED_PDQ_IMAGE))
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
