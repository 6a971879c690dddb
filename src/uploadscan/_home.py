"""Where uploadscan keeps its data directory.

``$UPLOADSCAN_HOME`` wins so that containers and tests can point every process at one place;
otherwise the platform's per-user data directory, following the XDG convention on Linux.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def default_home() -> Path:
    env = os.environ.get("UPLOADSCAN_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "uploadscan"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "uploadscan"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "uploadscan"


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    return Path(home).expanduser() if home is not None else default_home()
