"""The signed feed: publisher and client against a real HTTP server on 127.0.0.1.

Every attack or failure must leave the list exactly as it was: tampered manifest, snapshot or
delta, a foreign key, rollback, an expired manifest, truncation, oversized or trickling
responses, and redirects to another host.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import run
from _local_http import LocalServer, Reply, Request
from _tmk_values import CLIP_A, CLIP_B, fixture_tmk

from uploadscan import ConfigError, FeedVerificationError, SyncError
from uploadscan.hashing._tmk_format import encode_text
from uploadscan.hashtypes import Md5HashType, PdqHashType, Sha256HashType
from uploadscan.store._lists import ListKind
from uploadscan.store._store import Store
from uploadscan.sync import (
    HttpOptions,
    generate_keypair,
    publish_feed,
    source_from_uri,
    sync_list,
)
from uploadscan.sync._feed_format import MAX_LINE

PDQ_A, PDQ_B = PdqHashType.example_values
MD5_A, MD5_B = Md5HashType.example_values
SHA_A, _ = Sha256HashType.example_values
FAST = HttpOptions(timeout=2.0, deadline=5.0, retries=1, backoff=0.01)


class Feed:
    """A feed directory served at /feed/ with ETags and conditional GETs, like a CDN."""

    def __init__(self, tmp_path: Path, server: LocalServer) -> None:
        self.dir = tmp_path / "feed"
        self.key = tmp_path / "keys" / "publisher.key"
        self.public = generate_keypair(self.key)
        self.list_file = tmp_path / "list.txt"
        self.server = server
        self.overrides: dict[str, Reply] = {}
        server.fallback = self._serve

    def _serve(self, req: Request) -> Reply:
        name = req.path.removeprefix("/feed/")
        if name in self.overrides:
            return self.overrides[name]
        path = self.dir / name
        if not req.path.startswith("/feed/") or not path.is_file():
            return Reply(404, b"no")
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if req.headers.get("if-none-match") == etag:
            return Reply(304, b"", {"ETag": etag})
        return Reply(200, body, {"ETag": etag})

    def publish(self, *lines: str, **kwargs: object) -> None:
        self.list_file.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        publish_feed(self.list_file, self.dir, self.key, list_name="tvec", **kwargs)  # type: ignore[arg-type]

    @property
    def uri(self) -> str:
        return f"{self.server.url}/feed/?key={self.public.replace('+', '%2B')}"

    def source(self, uri: str | None = None, options: HttpOptions = FAST) -> object:
        return source_from_uri(uri or self.uri, http_options=options)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as s:
        yield s


@pytest.fixture
def feed(tmp_path: Path, server: LocalServer) -> Feed:
    return Feed(tmp_path, server)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "home" / "store.db") as s:
        s.add_list("tvec", kind=ListKind.BLOCK, source="(set per test)")
        yield s


def _sync(store: Store, feed: Feed, **kw: object) -> object:
    return sync_list(store, "tvec", source=feed.source(**kw))  # type: ignore[arg-type]


def _values(store: Store) -> set[tuple[str, str]]:
    return {(e.hash_type, e.value) for e in store.list_entries("tvec")}


def _state(store: Store) -> tuple[set[tuple[str, str]], str | None, int]:
    return _values(store), store.get_list("tvec").checkpoint, store.version()


def test_snapshot_then_delta_then_not_modified(store: Store, feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}", f"md5 {MD5_A}", f"sha256 {SHA_A}")
    first = _sync(store, feed)
    assert _values(store) == {("pdq", PDQ_A), ("md5", MD5_A), ("sha256", SHA_A)}
    assert first.added == 3  # type: ignore[attr-defined]
    assert json.loads(store.get_list("tvec").checkpoint or "")["sequence"] == 1

    feed.publish(f"pdq {PDQ_A}", f"md5 {MD5_B}", f"sha256 {SHA_A}")
    feed.server.log.clear()
    second = _sync(store, feed)
    assert _values(store) == {("pdq", PDQ_A), ("md5", MD5_B), ("sha256", SHA_A)}
    assert (second.added, second.removed) == (1, 1)  # type: ignore[attr-defined]
    assert feed.server.paths() == [
        "/feed/manifest.json",
        "/feed/manifest.json.sig",
        "/feed/delta-1-2.jsonl.gz",
    ]

    feed.server.log.clear()
    third = _sync(store, feed)
    assert third.batches == 0  # type: ignore[attr-defined]
    assert feed.server.paths() == ["/feed/manifest.json"]
    assert feed.server.log[0].headers.get("if-none-match")


def test_missed_deltas_chain_and_gap_falls_back_to_snapshot(store: Store, feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}")
    _sync(store, feed)
    feed.publish(f"pdq {PDQ_A}", f"md5 {MD5_A}")
    feed.publish(f"md5 {MD5_A}", f"md5 {MD5_B}")
    feed.server.log.clear()
    _sync(store, feed)
    assert _values(store) == {("md5", MD5_A), ("md5", MD5_B)}
    assert "/feed/delta-1-2.jsonl.gz" in feed.server.paths()
    assert "/feed/delta-2-3.jsonl.gz" in feed.server.paths()

    feed.publish(f"sha256 {SHA_A}", keep_deltas=0)
    feed.publish(f"sha256 {SHA_A}", f"pdq {PDQ_B}", keep_deltas=0)
    feed.server.log.clear()
    result = _sync(store, feed)
    assert _values(store) == {("sha256", SHA_A), ("pdq", PDQ_B)}
    assert "/feed/snapshot-5.jsonl.gz" in feed.server.paths()
    assert result.removed == 2  # type: ignore[attr-defined]


def test_interrupted_delta_chain_resumes_from_checkpoint(store: Store, feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}")
    _sync(store, feed)
    feed.publish(f"pdq {PDQ_A}", f"md5 {MD5_A}")
    feed.publish(f"pdq {PDQ_A}", f"md5 {MD5_A}", f"md5 {MD5_B}")
    # Apply only the first batch, as a sync killed after its first transaction would.
    source = feed.source()
    batches = source.fetch(store.get_list("tvec").checkpoint)  # type: ignore[attr-defined]
    batch = next(batches)
    store.apply_batch(
        "tvec", batch.upserts, batch.deletes, checkpoint=batch.checkpoint, mark_synced=False
    )
    batches.close()
    assert json.loads(store.get_list("tvec").checkpoint or "")["sequence"] == 2

    feed.server.log.clear()
    _sync(store, feed)
    assert _values(store) == {("pdq", PDQ_A), ("md5", MD5_A), ("md5", MD5_B)}
    assert [p for p in feed.server.paths() if "delta" in p] == ["/feed/delta-2-3.jsonl.gz"]


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target", ["manifest", "snapshot", "delta", "signature"])
def test_tampering_is_refused_and_nothing_applied(store: Store, feed: Feed, target: str) -> None:
    feed.publish(f"pdq {PDQ_A}")
    _sync(store, feed)
    feed.publish(f"pdq {PDQ_A}", f"md5 {MD5_A}")
    before = _state(store)
    manifest = json.loads((feed.dir / "manifest.json").read_bytes())
    if target == "manifest":
        path = feed.dir / "manifest.json"
        path.write_bytes(path.read_bytes().replace(b'"sequence": 2', b'"sequence": 9'))
    elif target == "signature":
        path = feed.dir / "manifest.json.sig"
        text = path.read_text()
        path.write_text(text[:10] + ("A" if text[10] != "A" else "B") + text[11:])
    elif target == "snapshot":
        # The snapshot is what a client with no checkpoint downloads.
        _tamper(feed.dir / manifest["snapshot"]["file"])
        with Store.open(store.path.parent / "fresh.db") as fresh:
            fresh.add_list("tvec", kind=ListKind.BLOCK, source="x")
            with pytest.raises(FeedVerificationError, match="SHA-256 differs"):
                sync_list(fresh, "tvec", source=feed.source())  # type: ignore[arg-type]
            assert list(fresh.list_entries("tvec")) == []
            assert fresh.get_list("tvec").checkpoint is None
        return
    else:
        _tamper(feed.dir / manifest["deltas"][-1]["file"])
    with pytest.raises(FeedVerificationError):
        _sync(store, feed)
    assert _state(store) == before


def test_foreign_key_and_other_list_are_refused(store: Store, feed: Feed, tmp_path: Path) -> None:
    feed.publish(f"pdq {PDQ_A}")
    other = generate_keypair(tmp_path / "other.key").replace("+", "%2B")
    with pytest.raises(FeedVerificationError, match="signature does not verify"):
        _sync(store, feed, uri=f"{feed.server.url}/feed/?key={other}")
    # Several pinned keys (rotation): one matching is enough.
    _sync(store, feed, uri=f"{feed.uri}&key={other}")
    assert _values(store) == {("pdq", PDQ_A)}
    with pytest.raises(FeedVerificationError, match="expected 'other'"):
        _sync(store, feed, uri=f"{feed.uri}&list=other")
    with pytest.raises(ConfigError, match="no public key pinned"):
        source_from_uri(f"{feed.server.url}/feed/")


def test_key_file_option(store: Store, feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}")
    pub = feed.key.with_name("publisher.key.pub")
    _sync(store, feed, uri=f"{feed.server.url}/feed/?key_file={pub}")
    assert _values(store) == {("pdq", PDQ_A)}


def test_rollback_and_expiry_are_refused(store: Store, feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}")
    old_manifest = (feed.dir / "manifest.json").read_bytes()
    old_sig = (feed.dir / "manifest.json.sig").read_bytes()
    feed.publish(f"pdq {PDQ_A}", f"md5 {MD5_A}")
    _sync(store, feed)
    before = _state(store)
    feed.overrides["manifest.json"] = Reply(200, old_manifest)
    feed.overrides["manifest.json.sig"] = Reply(200, old_sig)
    with pytest.raises(FeedVerificationError, match="rollback"):
        _sync(store, feed)
    assert _state(store) == before

    feed.overrides.clear()
    feed.publish(f"md5 {MD5_B}", ttl_seconds=-10)
    with pytest.raises(FeedVerificationError, match="expired"):
        _sync(store, feed)
    assert _state(store) == before


def test_truncated_and_oversized_downloads(store: Store, feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}", f"md5 {MD5_A}", f"md5 {MD5_B}")
    manifest = json.loads((feed.dir / "manifest.json").read_bytes())
    snap = manifest["snapshot"]["file"]
    body = (feed.dir / snap).read_bytes()
    feed.overrides[snap] = Reply(200, body, truncate_to=len(body) // 2)
    with pytest.raises(FeedVerificationError, match="truncated"):
        _sync(store, feed)
    feed.overrides[snap] = Reply(200, body + b"\0" * 100)
    with pytest.raises(FeedVerificationError, match="larger than"):
        _sync(store, feed)
    feed.overrides[snap] = Reply(200, body[:-5], {"Content-Length": str(len(body) - 5)})
    with pytest.raises(FeedVerificationError, match="bytes, the manifest declares"):
        _sync(store, feed)
    feed.overrides.clear()
    feed.overrides["manifest.json"] = Reply(200, b" " * (2 << 20))
    with pytest.raises(SyncError, match="exceeds the limit"):
        _sync(store, feed)
    assert _values(store) == set()
    assert store.get_list("tvec").checkpoint is None


def test_trickling_server_hits_the_deadline(store: Store, feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}")
    body = (feed.dir / "manifest.json").read_bytes()
    feed.overrides["manifest.json"] = Reply(200, body, trickle=0.05)
    started = time.monotonic()
    with pytest.raises(SyncError, match="deadline"):
        _sync(store, feed, options=HttpOptions(timeout=1.0, deadline=1.5, retries=0))
    assert time.monotonic() - started < 5
    assert _values(store) == set()


def test_redirects_stay_on_the_same_host(store: Store, feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}")
    elsewhere = f"http://localhost:{feed.server.port}/feed/manifest.json"
    feed.overrides["manifest.json"] = Reply(302, b"", {"Location": elsewhere})
    with pytest.raises(SyncError, match="refused redirect to another host"):
        _sync(store, feed)
    same = f"{feed.server.url}/mirror/manifest.json"
    body = (feed.dir / "manifest.json").read_bytes()
    feed.overrides["manifest.json"] = Reply(302, b"", {"Location": same})
    feed.server.routes["/mirror/manifest.json"] = lambda req: Reply(200, body)
    _sync(store, feed)
    assert _values(store) == {("pdq", PDQ_A)}


def test_server_errors_are_retried_then_reported(store: Store, feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}")
    calls = []
    real = feed._serve

    def flaky(req: Request) -> Reply:
        calls.append(req.path)
        if req.path.endswith("manifest.json") and calls.count(req.path) == 1:
            return Reply(503, b"busy", {"Retry-After": "0"})
        return real(req)

    feed.server.fallback = flaky
    _sync(store, feed)
    assert _values(store) == {("pdq", PDQ_A)}
    feed.overrides["manifest.json"] = Reply(500, b"down")
    with pytest.raises(SyncError, match="HTTP 500"):
        _sync(store, feed)


def test_plain_http_only_to_loopback() -> None:
    key = "A" * 43 + "="
    with pytest.raises(ConfigError, match="only allowed to loopback"):
        list(source_from_uri(f"http://example.org/feed/?key={key}").fetch(None))  # type: ignore[attr-defined]


def test_publisher_output_matches_the_documented_format(feed: Feed) -> None:
    feed.publish(f"pdq {PDQ_A}", f"video_md5 {MD5_A}")
    manifest = json.loads((feed.dir / "manifest.json").read_bytes())
    assert manifest["format"] == "uploadscan-feed" and manifest["version"] == 1
    assert manifest["list"] == "tvec" and manifest["sequence"] == 1
    snap = feed.dir / manifest["snapshot"]["file"]
    data = snap.read_bytes()
    assert manifest["snapshot"]["size"] == len(data)
    assert manifest["snapshot"]["sha256"] == hashlib.sha256(data).hexdigest()
    import gzip

    lines = [json.loads(x) for x in gzip.decompress(data).splitlines()]
    assert manifest["snapshot"]["entries"] == len(lines) == 2
    assert {"hash_type": "md5", "value": MD5_A, "labels": ["video"]} in lines
    assert (feed.key.stat().st_mode & 0o777) == 0o600
    with pytest.raises(ConfigError, match="already exists"):
        generate_keypair(feed.key)
    with pytest.raises(ConfigError, match="sequence must be above"):
        feed.publish(f"pdq {PDQ_A}", sequence=1)


def test_tmk_entries_round_trip_through_feed_publish_and_sync(
    store: Store, feed: Feed, tmp_path: Path
) -> None:
    # A publisher's list of videos as .tmk files (our hasher's, of bundled fixture videos),
    # published with the real CLI; each value travels as its HASH_TMK text in an entry line.
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "case-1.tmk").write_bytes(fixture_tmk(CLIP_A))
    (videos / "pictures.txt").write_text(f"pdq {PDQ_A}\n", encoding="utf-8")

    def publish() -> None:
        out = run("feed", "publish", str(videos), str(feed.dir), "--key", str(feed.key),
                  "--name", "tvec")  # fmt: skip
        assert out.returncode == 0, out.stderr

    publish()
    first = _sync(store, feed)
    clip_a, clip_b = encode_text(fixture_tmk(CLIP_A)), encode_text(fixture_tmk(CLIP_B))
    assert first.added == 2  # type: ignore[attr-defined]
    got = {(e.hash_type, e.value): e.external_id for e in store.list_entries("tvec")}
    assert got == {("tmk", clip_a): "case-1", ("pdq", PDQ_A): None}

    # The next version adds one video and withdraws the other: a delta of one upsert and one
    # delete, each a 351 KB line within the format's 1 MiB.
    (videos / "case-1.tmk").unlink()
    (videos / "case-2.tmk").write_bytes(fixture_tmk(CLIP_B))
    publish()
    delta = feed.dir / "delta-1-2.jsonl.gz"
    lines = [json.loads(x) for x in gzip.decompress(delta.read_bytes()).splitlines()]
    assert sorted((x.get("op", "upsert"), x["value"] == clip_b) for x in lines) == [
        ("delete", False),
        ("upsert", True),
    ]
    assert max(len(x) for x in gzip.decompress(delta.read_bytes()).splitlines()) < MAX_LINE
    feed.server.log.clear()
    second = _sync(store, feed)
    assert (second.added, second.removed) == (1, 1)  # type: ignore[attr-defined]
    assert "/feed/delta-1-2.jsonl.gz" in feed.server.paths()
    got = {(e.hash_type, e.value): e.external_id for e in store.list_entries("tvec")}
    assert got == {("tmk", clip_b): "case-2", ("pdq", PDQ_A): None}
