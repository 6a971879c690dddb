"""The repository itself: what a fresh clone ignores."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_virtualenvs_are_ignored() -> None:
    # The README creates .venv/ and .ci/run creates .ci-venv/ inside the checkout.
    patterns = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    for venv in (".venv", ".ci-venv"):
        assert {venv, f"{venv}/", f"/{venv}/"} & set(patterns), venv
        if (ROOT / ".git").exists() and shutil.which("git"):
            ignored = subprocess.run(
                ["git", "-C", str(ROOT), "check-ignore", "-q", f"{venv}/bin/python"],
                check=False,
            )
            assert ignored.returncode == 0, f"git does not ignore {venv}/"
