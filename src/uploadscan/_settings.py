"""The Scanner's options, kept in one frozen dataclass and in the data directory's config.

Every process that opens a data directory (web workers, the sidecar service, the CLI) must
agree on the fail mode, the limits and the audit retention, so they live in ``config.json``
there and change without code. Keyword arguments to ``Scanner.open`` override the file.
``ScannerSettings`` is the single definition: the config file is parsed into it, the
sidecar's settings carry one, and the CLI's choices (``--fail-mode``...) come from it. Unknown
keys are an error: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ._action import Action
from ._errors import ConfigError
from .media._limits import DEFAULT_LIMITS, Limits

CONFIG_FILENAME = "config.json"

__all__ = ["CONFIG_FILENAME", "ScannerSettings"]


def _help(text: str, *, service: bool = True) -> dict[str, Any]:
    return {"help": text, "service": service}


@dataclass(frozen=True)
class ScannerSettings:
    """How a ``Scanner`` decides. Every field has a documented default.

    Strings are accepted for the actions (``fail_mode="allow"``) and a mapping for ``limits``,
    as they come from JSON and command lines; they are stored as ``Action`` and ``Limits``.
    """

    fail_mode: Action = field(
        default=Action.REVIEW,
        metadata=_help(
            "action when an upload cannot be hashed or a block/review list is not current"
        ),
    )
    non_media: Action = field(
        default=Action.ALLOW,
        metadata=_help("action for bytes that are not media and match no exact hash"),
    )
    strict: bool = field(
        default=False,
        metadata=_help("raise UploadScanError instead of a fail-mode verdict", service=False),
    )
    dihedral: bool = field(
        default=True,
        metadata=_help("also query rotated, mirrored and border-trimmed forms of images"),
    )
    audit: bool = field(default=True, metadata=_help("record every decision in the store"))
    match_images_in_video: bool = field(
        default=True, metadata=_help("let listed images match single frames of videos")
    )
    audit_retention_days: float | None = field(
        default=None, metadata=_help("purge decisions older than this when a scanner opens")
    )
    limits: Limits = field(default=DEFAULT_LIMITS, metadata=_help("resource limits per upload"))

    def __post_init__(self) -> None:
        for name in ("fail_mode", "non_media"):
            object.__setattr__(self, name, Action.parse(getattr(self, name)))
        for name in ("strict", "dihedral", "audit", "match_images_in_video"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        days = self.audit_retention_days
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int | float) or not days > 0
        ):
            raise ConfigError(f"audit_retention_days must be a positive number, got {days!r}")
        limits = self.limits
        if isinstance(limits, Mapping):
            object.__setattr__(self, "limits", _limits_from(limits))
        elif not isinstance(limits, Limits):
            raise ConfigError(f"limits must be a Limits or a mapping, got {limits!r}")

    # ------------------------------------------------------------------ building

    @classmethod
    def names(cls, *, service: bool = False) -> tuple[str, ...]:
        """Option names (``service``: only those the sidecar service accepts)."""
        return tuple(f.name for f in fields(cls) if not service or f.metadata.get("service"))

    @classmethod
    def help(cls, name: str) -> str:
        return str(next(f.metadata["help"] for f in fields(cls) if f.name == name))

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, where: str = "settings", service: bool = False
    ) -> ScannerSettings:
        """Parse options, rejecting unknown keys (``service``: only the service's options)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping of scanner options")
        known = cls.names(service=service)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"{where}: unknown setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**dict(data))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def replace(self, **changes: Any) -> ScannerSettings:
        """A copy with ``changes`` (validated, unknown names refused)."""
        return ScannerSettings.from_mapping({**self._as_kwargs(), **changes}, where="options")

    def _as_kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, the shape of ``config.json``."""
        out = self._as_kwargs()
        out["fail_mode"] = self.fail_mode.value
        out["non_media"] = self.non_media.value
        out["limits"] = dataclasses.asdict(self.limits)
        return out

    # ------------------------------------------------------------------ the data directory

    @classmethod
    def load(cls, home: Path) -> ScannerSettings:
        """The settings in ``home/config.json`` (defaults when there is no file)."""
        return cls.from_mapping(read_config(home), where=str(home / CONFIG_FILENAME))


def read_config(home: Path) -> dict[str, Any]:
    """The raw options in ``home/config.json`` (empty when there is no file)."""
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
    return data


def _limits_from(data: Mapping[str, Any]) -> Limits:
    known = {f.name for f in fields(Limits)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"'limits' takes {', '.join(sorted(known))}; got {unknown!r}")
    return Limits(**dict(data))
