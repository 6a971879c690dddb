"""The real ``uploadscan`` command line for tests, and a static file server for feeds.

``run`` starts ``python -m uploadscan.cli`` as a subprocess, the way cron or systemd runs
it; ``call`` runs the same ``main(argv)`` in this process, for tests that need dozens of
invocations. ``StaticFiles`` serves a directory tree on 127.0.0.1 like any web server or CDN
would host a feed, with per-file trickling to play a slow server.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from _local_http import LocalServer, Reply, Request

from uploadscan.cli import main


def run(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uploadscan.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Called:
    code: int
    out: str
    err: str


def call(*args: str) -> Called:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Called(code, out.getvalue(), err.getvalue())


class StaticFiles:
    """Serves ``root`` at the server's root; ``trickle[path]`` slows one file down."""

    def __init__(self, server: LocalServer, root: Path) -> None:
        self.root = root
        self.trickle: dict[str, float] = {}
        server.fallback = self._serve

    def _serve(self, req: Request) -> Reply:
        path = (self.root / req.path.lstrip("/")).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            return Reply(404, b"not found")
        return Reply(200, path.read_bytes(), trickle=self.trickle.get(req.path, 0.0))
