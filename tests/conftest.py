"""Shared fixtures: where the real test media lives.

The media is never copied into the project. It is found at ``$UPLOADSCAN_TEST_DATA`` or at
``../shared/data`` beside the project root; a missing data directory fails loudly instead of
skipping, so a CI run without the media can never pass silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def find_test_data() -> Path:
    env = os.environ.get("UPLOADSCAN_TEST_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(PROJECT_ROOT.parent / "shared" / "data")
    for candidate in candidates:
        if (candidate / "MANIFEST.txt").is_file():
            return candidate
    raise RuntimeError(
        "test media not found: set UPLOADSCAN_TEST_DATA or place shared/data beside the project "
        f"(looked in {', '.join(str(c) for c in candidates)})"
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return find_test_data()
