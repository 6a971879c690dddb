"""The public surface is small and pinned: changing it is a deliberate, reviewed act."""

from __future__ import annotations

import json
import subprocess
import sys

import uploadscan

EXPECTED = {
    "Action",
    "ConfigError",
    "CorruptMediaError",
    "FeedVerificationError",
    "FrameHash",
    "HashList",
    "HashResult",
    "InvalidHashError",
    "Limits",
    "ListKind",
    "ListNotFoundError",
    "ListSettings",
    "Match",
    "MediaError",
    "MediaTooLargeError",
    "Scanner",
    "StoreCorruptError",
    "StoreError",
    "SyncError",
    "UnknownHashTypeError",
    "UnsupportedMediaError",
    "UploadScanError",
    "Verdict",
    "__version__",
    "hash_file",
}


def test_all_is_pinned() -> None:
    assert set(uploadscan.__all__) == EXPECTED
    for name in uploadscan.__all__:
        assert hasattr(uploadscan, name), name


def test_every_error_is_an_uploadscan_error() -> None:
    for name in uploadscan.__all__:
        obj = getattr(uploadscan, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, uploadscan.UploadScanError), name


def test_action_values_are_the_wire_strings() -> None:
    assert [a.value for a in uploadscan.Action] == ["allow", "review", "block"]


def test_verdict_is_frozen_and_json_safe() -> None:
    verdict = uploadscan.Verdict(action=uploadscan.Action.ALLOW)
    text = json.dumps(verdict.to_dict())
    assert json.loads(text)["action"] == "allow"
    try:
        verdict.action = uploadscan.Action.BLOCK  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("Verdict must be frozen")


def test_cli_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "uploadscan.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"uploadscan {uploadscan.__version__}"
