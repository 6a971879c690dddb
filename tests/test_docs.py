"""The README's code runs, and every command the docs show exists with the flags they give.

- Every ``python`` block of the README runs, in order, in one namespace, in a directory with
  a real data directory (block and review lists synced from list files) and the files the
  snippets name. The upload-handler snippet is then driven with a listed, a to-review and an
  unrelated upload: what it publishes is asserted, so a snippet that publishes REVIEW uploads
  fails here.
- Every ``uploadscan ...`` line in a shell block of the README and of ``docs/`` and
  ``examples/`` parses with the real CLI parser: a documented flag that does not exist fails.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import uploadscan
from uploadscan.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples/README.md"]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SHELL = {"bash", "sh", "shell", "console", ""}


def code_blocks(path: Path, languages: set[str]) -> Iterator[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        if match.group(1) in languages:
            yield text.count("\n", 0, match.start()) + 1, match.group(2)


def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.commenters = "#"
    lexer.whitespace_split = True
    return list(lexer)


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every ``uploadscan`` command line in a shell block of the docs."""
    out = []
    for path in DOCS:
        for line_number, block in code_blocks(path, _SHELL):
            pending, start = "", 0
            for offset, line in enumerate(block.replace("\\\n", " ").splitlines()):
                if not pending:
                    start = offset
                pending += line + "\n"
                try:
                    tokens = _tokens(pending)
                except ValueError:
                    continue  # a quoted string goes on over the next line
                pending = ""
                command: list[str] = []
                for token in [*tokens, ";"]:
                    if token in ("&&", "||", ";", "|", "&", ">", ">>", "<", "2>"):
                        words = [w for w in command if w != "$"]
                        if words and words[0] == "uploadscan":
                            where = f"{path.relative_to(ROOT)}:{line_number + start + 1}"
                            out.append((where, words[1:]))
                        command = [] if token != ">" else ["redirect"]
                    else:
                        command.append(token)
    return out


COMMANDS = documented_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 20  # the extraction itself must not silently find nothing


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where: str, argv: list[str]) -> None:
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help and --version exit 0
            raise AssertionError(f"{where}: uploadscan {shlex.join(argv)} does not parse") from exc


def _picture(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((512, 384), Image.Resampling.BICUBIC).save(
        buffer, "JPEG", quality=90
    )
    return buffer.getvalue()


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = list(code_blocks(ROOT / "README.md", {"python"}))
    assert blocks, "the README has no python block"
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("UPLOADSCAN_HOME", str(home))
    blocked, reviewed, clean = _picture(1), _picture(2), _picture(3)
    (tmp_path / "photo.jpg").write_bytes(clean)
    (tmp_path / "block.txt").write_text(f"md5 {uploadscan.hash_file(blocked).md5}\n")
    (tmp_path / "review.txt").write_text(f"md5 {uploadscan.hash_file(reviewed).md5}\n")
    with uploadscan.Scanner.open(home) as setup:
        setup.add_list("terror", kind="block", source=str(tmp_path / "block.txt"))
        setup.add_list("watch", kind="review", source=str(tmp_path / "review.txt"))
        assert all(result.ok for result in setup.sync())

    published: list[bytes] = []
    queued: list[tuple[bytes, str]] = []
    namespace: dict[str, Any] = {
        "__name__": "readme",
        "publish": published.append,
        "queue_for_moderator": lambda data, verdict_id: queued.append((data, verdict_id)),
        "upload_bytes": clean,
    }
    for line, block in blocks:
        try:
            exec(compile(block, f"README.md:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"README.md:{line}: the python block fails: {exc!r}") from exc

    handle = namespace.get("handle_upload")
    assert callable(handle), "the README's upload-handler snippet defines handle_upload"
    with pytest.raises(PermissionError):
        handle(blocked)
    handle(reviewed)
    handle(clean)
    assert published == [clean]  # neither the blocked nor the to-review upload
    assert [data for data, _ in queued] == [reviewed]
