"""Scanner settings kept in the data directory (``config.json``), so they change without code.

Every process that opens the directory (web workers, the sidecar service, the CLI) then agrees
on the fail mode, limits and audit retention. Keyword arguments to ``Scanner.open`` override the
file. Unknown keys are an error: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from .media._limits import Limits

CONFIG_FILENAME = "config.json"

_SCANNER_KEYS: dict[str, type | tuple[type, ...]] = {
    "fail_mode": str,
    "strict": bool,
    "dihedral": bool,
    "audit": bool,
    "match_images_in_video": bool,
    "audit_retention_days": (int, float),
}
_LIMIT_KEYS = set(Limits.__dataclass_fields__)


def load_config(home: Path) -> dict[str, Any]:
    """Scanner keyword arguments from ``home/config.json`` (empty if there is no file)."""
    path = home / CONFIG_FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "limits":
            if not isinstance(value, dict) or not set(value) <= _LIMIT_KEYS:
                unknown = sorted(set(value) - _LIMIT_KEYS) if isinstance(value, dict) else value
                raise ConfigError(
                    f"{path}: 'limits' takes {', '.join(sorted(_LIMIT_KEYS))}; got {unknown!r}"
                )
            out["limits"] = Limits(**value)
            continue
        expected = _SCANNER_KEYS.get(key)
        if expected is None:
            known = ", ".join(sorted([*_SCANNER_KEYS, "limits"]))
            raise ConfigError(f"{path}: unknown setting {key!r}; known: {known}")
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise ConfigError(f"{path}: {key} has the wrong type ({value!r})")
        out[key] = value
    return out
