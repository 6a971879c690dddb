"""docs/serve.md and docs/security.md against the real service, CLI and source tree.

tests/test_docs.py parses every ``uploadscan ...`` line of the docs' shell blocks; this covers
the rest of what an operator copies from these two pages: the options table (every flag
exists, every flag is listed), the systemd units (settings systemd accepts, commands the CLI
parses), the endpoints table (every route, nothing more), the verdict example (the keys a real
verdict has), the error codes (every code the service can answer) and the metric names (every
name the real ``/metrics`` shows), and the source files docs/security.md points at.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_docs import code_blocks
from test_serve import BLOCKED_PDQ_IMAGE, Running, build_home, image, start

from uploadscan.cli import build_parser
from uploadscan.serve import create_app

ROOT = Path(__file__).resolve().parent.parent
SERVE_MD = ROOT / "docs" / "serve.md"
SECURITY_MD = ROOT / "docs" / "security.md"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start(create_app(build_home(tmp_path_factory.mktemp("docs-home"))))
    yield running
    running.stop()


def _serve_parser_flags() -> set[str]:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "command"]
    serve = subparsers.choices["serve"]  # type: ignore[attr-defined]
    return {
        option
        for action in serve._actions
        if action.help != "==SUPPRESS==" and action.dest != "help"
        for option in action.option_strings
        if option.startswith("--")
    }


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def test_options_table_matches_the_cli() -> None:
    text = SERVE_MD.read_text(encoding="utf-8")
    table = text[text.index("| option |") : text.index("\n\n", text.index("| option |"))]
    documented = set(re.findall(r"^\| `(--[a-z-]+)", table, re.MULTILINE))
    assert documented == _serve_parser_flags()


def _ini_blocks() -> list[tuple[int, str]]:
    return list(code_blocks(SERVE_MD, {"ini"}))


def test_systemd_units_are_valid_settings_and_commands() -> None:
    blocks = _ini_blocks()
    assert len(blocks) >= 2
    commands = 0
    for line_number, block in blocks:
        for offset, line in enumerate(block.splitlines()):
            where = f"docs/serve.md:{line_number + offset + 1}"
            stripped = line.strip()
            if not stripped or stripped[0] in "#;" or stripped.startswith("["):
                continue
            key, sep, value = stripped.partition("=")
            assert sep and re.fullmatch(r"[A-Za-z]+", key), f"{where}: not a setting: {line!r}"
            # systemd takes everything after '=' as the value: a trailing comment is not one.
            assert not re.search(r"\s[#;]", value), f"{where}: comment after a setting: {line!r}"
            if key == "ExecStart" and "uploadscan" in value:
                argv = shlex.split(value)
                assert argv[0].endswith("/uploadscan"), where
                build_parser().parse_args(argv[1:])  # SystemExit(2) if a flag does not exist
                commands += 1
    assert commands >= 2  # the service and the sync unit


def test_endpoints_table_lists_every_route(service: Running) -> None:
    text = SERVE_MD.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(GET|POST) (/[a-z0-9/.]+)", text, re.MULTILINE))
    with httpx.Client(base_url=service.url, timeout=30) as c:
        spec = c.get("/openapi.json").json()
    served = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert documented == served - {("GET", "/openapi.json")}


def test_verdict_example_has_the_real_keys(service: Running) -> None:
    [(_, example)] = list(code_blocks(SERVE_MD, {"json"}))
    documented = json.loads(example)
    with httpx.Client(base_url=service.url, timeout=30) as c:
        real = c.post("/v1/scan", content=image(BLOCKED_PDQ_IMAGE)).json()
    assert real["action"] == "block"
    assert set(documented) == set(real)
    assert set(documented["matches"][0]) == set(real["matches"][0])


def _answered_codes() -> set[str]:
    """Every error code the service's source can answer with."""
    codes: set[str] = set()
    for path in (ROOT / "src" / "uploadscan" / "serve").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        codes.update(re.findall(r'RequestError\(\s*\d{3},\s*"([a-z_]+)"', source))
        codes.update(re.findall(r'json_error_bytes\(\s*"([a-z_]+)"', source))
    codes.discard("hma")  # HMA's own error shape, {"message": ...}
    return codes


def test_every_error_code_is_documented() -> None:
    codes = _answered_codes()
    assert {"not_found", "method_not_allowed", "too_slow", "multiple_files"} <= codes
    text = SERVE_MD.read_text(encoding="utf-8")
    paragraph = text[text.index("Every HTTP error is JSON") :]
    paragraph = paragraph[: paragraph.index("\n\n")]
    documented = set(re.findall(r"`([a-z_]+)`", paragraph))
    assert codes <= documented, codes - documented


def test_documented_metrics_exist(service: Running) -> None:
    text = _section(SERVE_MD.read_text(encoding="utf-8"), "## Operating it")
    documented = set(re.findall(r"`(uploadscan_[a-z_]+)", text))
    assert len(documented) >= 5
    with httpx.Client(base_url=service.url, timeout=30) as c:
        c.post("/v1/scan", content=b"\xff\xd8\xff\xe0 corrupt")  # a scan error to count
        c.post("/v1/scan", content=b"")  # a rejection to count
        metrics = c.get("/metrics").text
    names = {line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE ")}
    assert documented <= names, documented - names


def _paths_in(text: str) -> set[str]:
    return set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", text))


@pytest.mark.parametrize("path", sorted(_paths_in(SECURITY_MD.read_text(encoding="utf-8"))))
def test_security_doc_points_at_files_that_exist(path: str) -> None:
    assert (ROOT / path).is_file() or (ROOT / "src" / "uploadscan" / path).is_file(), path


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def test_security_doc_calls_open_only_what_is_still_open() -> None:
    # A bug the page calls open points at the test that reproduces it; that test must still
    # be expected to fail (xfail), else the bug is fixed and the page is out of date.
    for paragraph in _paragraphs(SECURITY_MD.read_text(encoding="utf-8")):
        if not paragraph.startswith("Open"):
            continue
        tests = re.findall(r"`(tests/test_[a-z_]+\.py)`", paragraph)
        assert tests, f"an open issue names no test reproducing it: {paragraph[:80]}"
        for test in tests:
            assert "xfail" in (ROOT / test).read_text(encoding="utf-8"), (
                f"docs/security.md calls open a bug that {test} shows fixed: {paragraph[:80]}"
            )


def test_security_doc_names_code_that_exists() -> None:
    source = "".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "src" / "uploadscan").rglob("*.py")
    )
    named = set(re.findall(r"`([A-Z][A-Za-z]+)\.([a-z_]+)`", SECURITY_MD.read_text("utf-8")))
    assert named
    for cls, attr in sorted(named):
        assert re.search(rf"^class {cls}\b", source, re.MULTILINE), cls
        assert re.search(rf"(def |^\s+){attr}\b", source, re.MULTILINE), f"{cls}.{attr}"
