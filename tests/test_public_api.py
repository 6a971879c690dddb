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
    "DeltaUnavailableError",
    "FeatureRecordError",
    "FeedVerificationError",
    "FrameHash",
    "HashList",
    "HashResult",
    "HashTypeError",
    "IndexFileError",
    "InvalidHashError",
    "Limits",
    "ListKind",
    "ListNotFoundError",
    "ListSettings",
    "Match",
    "MediaError",
    "MediaTooLargeError",
    "RequestError",
    "Scanner",
    "ScannerSettings",
    "StaleCheckpointError",
    "StoreCorruptError",
    "StoreError",
    "StoreVersionError",
    "SyncError",
    "SyncResult",
    "SyncTimeoutError",
    "TruncatedDownloadError",
    "UnknownHashTypeError",
    "UnpicklableSecretError",
    "UnsupportedMediaError",
    "UploadReadError",
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


def test_every_error_the_library_defines_is_exported_and_in_the_tree() -> None:
    """Each exception class in the package subclasses ``UploadScanError``, is defined in
    ``_errors`` and is drawn in its docstring's tree."""
    import ast
    from pathlib import Path

    from uploadscan import _errors

    root = Path(uploadscan.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", getattr(base, "attr", "")).endswith(("Error", "Exception"))
                for base in node.bases
            ):
                assert path.name == "_errors.py", f"{path}: exception {node.name} outside _errors"
    doc = _errors.__doc__ or ""
    for name in dir(_errors):
        obj = getattr(_errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, uploadscan.UploadScanError), name
            assert name in doc, f"{name} is missing from the tree in _errors' docstring"
            assert name in uploadscan.__all__, f"{name} is not exported"


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
