"""Configuring and publishing lists through the real command line.

- ``keys generate`` prints a ready-to-paste ``--source``; pasted as-is (only the HOST, FEED
  and NAME placeholders filled in) it must pass ``lists add`` and ``sync`` for every key,
  including the half whose base64 holds a ``+``.
- ``lists add`` checks the source before storing it: relative paths become absolute, and a
  missing file, an unknown scheme or a placeholder key is refused with the reason.
- ``feed publish`` takes the options ``docs/feed.md`` documents, and its documented recovery
  for a lost feed directory (``--sequence N``) works end to end.
- ``lists set`` unsets an optional setting with ``none``.
"""

from __future__ import annotations

import json
import random
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import StaticFiles, call, run
from _local_http import LocalServer

from uploadscan.cli import build_parser
from uploadscan.store._store import Store
from uploadscan.sync import publish_feed

DOCS = Path(__file__).resolve().parent.parent / "docs" / "feed.md"


def _pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as s:
        yield s


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "UPLOADSCAN_TCAP_TOKEN",
        "UPLOADSCAN_TCAP_CREDENTIALS",
        "UPLOADSCAN_THREATEXCHANGE_TOKEN",
        "UPLOADSCAN_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


def _entries(home: Path, name: str) -> set[str]:
    with Store.open(home / "store.sqlite3") as store:
        return {e.value for e in store.list_entries(name)}


def _source_of(home: Path, name: str) -> str:
    shown = call("lists", "show", name, "--json", "--home", str(home))
    assert shown.code == 0, shown.err
    return str(json.loads(shown.out)["source"])


def test_printed_feed_source_works_pasted_as_is(tmp_path: Path, server: LocalServer) -> None:
    home = tmp_path / "home"
    feeds = tmp_path / "feeds"
    StaticFiles(server, feeds)
    rng = random.Random(4)
    expected: dict[str, set[str]] = {}
    keys_with_plus = 0
    for i in range(48):
        key = tmp_path / "keys" / f"publisher{i}.key"
        generated = call("keys", "generate", str(key))
        assert generated.code == 0, generated.err
        public = key.with_name(key.name + ".pub").read_text().strip()
        keys_with_plus += "+" in public
        (line,) = [x for x in generated.out.splitlines() if "--source" in x]
        command = shlex.split(line.partition(": ")[2])
        assert command[:4] == ["uploadscan", "lists", "add", "NAME"]
        assert command[4] == "--source" and public in command[5]
        # Paste as-is: fill in only the placeholders the output names.
        name = f"feed{i}"
        source = command[5].replace("https://HOST/FEED/", f"{server.url}/{name}/")
        values = {_pdq(rng) for _ in range(3)}
        list_file = tmp_path / f"{name}.txt"
        list_file.write_text("".join(f"pdq {v}\n" for v in sorted(values)))
        publish_feed(list_file, feeds / name, key, list_name=name)
        added = call("lists", "add", name, "--source", source, "--home", str(home))
        assert added.code == 0, f"key {public!r}: {added.err}"
        assert "uploadscan sync" in added.out
        expected[name] = values
    assert keys_with_plus >= 10  # the case this test is about really occurred

    synced = run("sync", "--json", "--home", str(home))
    results = {r["list"]: r for r in map(json.loads, synced.stdout.splitlines())}
    failed = {n: r["error"] for n, r in results.items() if r["error"]}
    assert failed == {} and synced.returncode == 0, synced.stderr
    assert set(results) == set(expected)
    for name, values in expected.items():
        assert _entries(home, name) == values


def test_lists_add_checks_the_source(tmp_path: Path, server: LocalServer) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    (work / "lists").mkdir(parents=True)
    rng = random.Random(11)
    value = _pdq(rng)
    (work / "lists" / "mine.txt").write_text(f"pdq {value}\n")
    (work / "lists" / "mine.csv").write_text(f"hash_type,value\npdq,{value}\n")
    generated = call("keys", "generate", str(work / "publisher.key"))
    assert generated.code == 0
    key = (work / "publisher.key.pub").read_text().strip()

    # A relative path is stored absolute, and the list then syncs from any directory.
    added = run("lists", "add", "mine", "--source", "lists/mine.txt", "--home", str(home), cwd=work)
    assert added.returncode == 0, added.stderr
    assert "uploadscan sync" in added.stdout
    assert _source_of(home, "mine") == str(work / "lists" / "mine.txt")
    added = run(
        "lists", "add", "csv", "--source", "file:lists/mine.csv?format=csv",
        "--home", str(home), cwd=work,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert _source_of(home, "csv") == f"file://{work}/lists/mine.csv?format=csv"
    added = run(
        "lists", "add", "keyfile", "--source",
        f"{server.url}/feed/?key_file=publisher.key.pub", "--home", str(home), cwd=work,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert _source_of(home, "keyfile").endswith(f"?key_file={work}/publisher.key.pub")
    call("lists", "remove", "keyfile", "--home", str(home))
    synced = run("sync", "--json", "--home", str(home), cwd=tmp_path)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert _entries(home, "mine") == {value} == _entries(home, "csv")

    refused = {
        "lists/gone.txt": "list file .*gone.txt does not exist",
        "ftp://lists.example.org/tvec.txt": "unknown list source scheme 'ftp'",
        "https://feeds.example.org/tvec/?key=<public key>": "'<public key>' is a placeholder",
        "https://feeds.example.org/tvec/?key=abc": "feed key must be an Ed25519 public key",
        f"https://feeds.example.org/tvec/?key={key[:20]}%20{key[21:]}": "character ' '",
        f"http://feeds.example.org/tvec/?key={key}": "only allowed to loopback",
        f"https://feeds.example.org/tvec/?key={key}&lsit=tvec": "unknown feed option",
        f"{server.url}/feed/?key_file=missing.pub": "cannot read public key file",
        "lists/mine.txt?format=xml": "does not exist",
        f"file://{work}/lists/mine.txt?format=xml": "file format must be one of",
        "threatexchange:not-a-group": "privacy group id",
        "tcap:?base_url=http://example.org/": "only allowed to loopback",
    }
    for source, reason in refused.items():
        result = call("lists", "add", "bad", "--source", source, "--home", str(home))
        assert result.code == 2, source
        assert re.search(reason, result.err), (source, result.err)
        assert "uploadscan sync" not in result.out, source
    shown = call("lists", "show", "--json", "--home", str(home))
    assert {json.loads(x)["name"] for x in shown.out.splitlines()} == {"mine", "csv"}

    # Credentials may come later: the list is added, and the message says what is missing.
    added = call("lists", "add", "tcap", "--source", "tcap:", "--home", str(home))
    assert added.code == 0, added.err
    assert "before it can sync, set up TCAP credentials" in added.out
    assert "UPLOADSCAN_TCAP_TOKEN" in added.out


def test_lists_add_tells_when_credentials_are_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("UPLOADSCAN_THREATEXCHANGE_TOKEN", "1234|secret")
    added = call("lists", "add", "gifct", "--source", "threatexchange:303636684709969",
                 "--home", str(home))  # fmt: skip
    assert added.code == 0, added.err
    assert "run `uploadscan sync` to fill it" in added.out
    assert "secret" not in added.out
    missing = call("lists", "add", "tcap", "--source", "tcap:", "--home", str(home))
    assert missing.code == 0 and "set up TCAP credentials" in missing.out


def test_feed_publish_options_are_the_documented_ones() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    commands = [
        shlex.split(line)
        for line in docs.splitlines()
        if line.startswith("uploadscan feed publish ")
    ]
    assert commands
    documented = {tok for cmd in commands for tok in cmd if tok.startswith("--")}
    documented |= set(re.findall(r"`(--[a-z-]+)[ `]", docs))
    assert {"--key", "--list-name", "--sequence"} <= documented
    parser = build_parser()
    dests = {"--list-name": "list_name", "--name": "list_name", "--sequence": "sequence"}
    assert documented - {"--key"} <= set(dests)
    for option in sorted(documented - {"--key"}):
        value = "7" if option == "--sequence" else "tvec"
        args = ["feed", "publish", "l.txt", "feed/", "--key", "k", option, value]
        parsed = parser.parse_args(args)
        assert parsed.handler.__name__ == "run_feed_publish", option
        assert str(getattr(parsed, dests[option])) == value, option


def test_lost_feed_directory_recovers_with_sequence(tmp_path: Path, server: LocalServer) -> None:
    """docs/feed.md: never reset the sequence; after losing the feed directory, publish with
    a sequence above the last one (``--sequence N``)."""
    home = tmp_path / "home"
    root = tmp_path / "www"
    feed = root / "tvec"
    StaticFiles(server, root)
    key = tmp_path / "publisher.key"
    assert call("keys", "generate", str(key)).code == 0
    public = key.with_name("publisher.key.pub").read_text().strip()
    rng = random.Random(23)
    versions = [{_pdq(rng) for _ in range(4)} for _ in range(4)]
    list_file = tmp_path / "list.txt"

    def publish(version: int, *extra: str) -> dict[str, object]:
        list_file.write_text("".join(f"pdq {v}\n" for v in sorted(versions[version])))
        result = run(
            "feed", "publish", str(list_file), str(feed), "--key", str(key),
            "--list-name", "tvec", *extra,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def sync() -> tuple[int, dict[str, object]]:
        result = run("sync", "--json", "--home", str(home))
        return result.returncode, json.loads(result.stdout)

    assert publish(0)["sequence"] == 1
    source = f"{server.url}/tvec/?key={public}"
    assert call("lists", "add", "tvec", "--source", source, "--home", str(home)).code == 0
    assert sync()[0] == 0
    assert publish(1)["sequence"] == 2
    assert sync()[0] == 0 and _entries(home, "tvec") == versions[1]

    shutil.rmtree(feed)  # the feed directory is lost
    # Publishing as if new starts again at 1: every subscriber refuses it as a rollback.
    assert publish(2)["sequence"] == 1
    code, result = sync()
    assert code == 2 and "rollback" in str(result["error"])
    assert _entries(home, "tvec") == versions[1]

    shutil.rmtree(feed)
    assert publish(2, "--sequence", "3")["sequence"] == 3
    code, result = sync()
    assert code == 0, result
    assert _entries(home, "tvec") == versions[2]
    assert publish(3)["sequence"] == 4  # and the feed carries on from there, with a delta
    code, result = sync()
    assert code == 0 and _entries(home, "tvec") == versions[3]
    assert result["batches"] == 1 and (feed / "delta-3-4.jsonl.gz").is_file()

    low = run("feed", "publish", str(list_file), str(feed), "--key", str(key),
              "--list-name", "tvec", "--sequence", "4")  # fmt: skip
    assert low.returncode == 2 and "sequence must be above the last published one" in low.stderr


def test_lists_set_accepts_none_to_unset(tmp_path: Path) -> None:
    home = tmp_path / "home"
    list_file = tmp_path / "l.txt"
    list_file.write_text("")
    assert call("lists", "add", "l", "--source", str(list_file), "--home", str(home)).code == 0

    def settings() -> dict[str, object]:
        shown = call("lists", "show", "l", "--json", "--home", str(home))
        return dict(json.loads(shown.out)["settings"])

    for spelling in ("none", "None", "NONE", "null"):
        assert call("lists", "set", "l", "max_age_seconds=3600", "--home", str(home)).code == 0
        assert settings()["max_age_seconds"] == 3600
        result = call("lists", "set", "l", f"max_age_seconds={spelling}", "--home", str(home))
        assert result.code == 0, (spelling, result.err)
        assert settings()["max_age_seconds"] is None
    assert call("lists", "set", "l", "pdq_action_distance=20", "--home", str(home)).code == 0
    assert call("lists", "set", "l", "pdq_action_distance=none", "--home", str(home)).code == 0
    assert settings()["pdq_action_distance"] is None
    refused = call("lists", "set", "l", "pdq_threshold=none", "--home", str(home))
    assert refused.code == 2 and "pdq_threshold" in refused.err
    added = call("lists", "add", "m", "--source", str(list_file), "--set", "max_age_seconds=none",
                 "--home", str(home))  # fmt: skip
    assert added.code == 0, added.err
    help_out = run("lists", "set", "--help").stdout
    assert "max_age_seconds=none" in help_out
