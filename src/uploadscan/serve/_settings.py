"""The service's settings, validated once and passable to worker processes as JSON.

``uvicorn --workers N`` starts fresh processes that import the app factory by name, so the
settings cannot be handed over as Python objects; they travel in one environment variable
(``UPLOADSCAN_SERVE_CONFIG``) as JSON and are validated again on the other side.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from .._action import Action
from .._errors import ConfigError
from .._settings import ScannerSettings
from ..media._limits import Limits

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MIN_RECEIVE_RATE",
    "DEFAULT_RECEIVE_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "ENV_CONFIG",
    "PictrsReview",
    "ServeSettings",
]

ENV_CONFIG = "UPLOADSCAN_SERVE_CONFIG"
DEFAULT_MAX_BODY_BYTES = 64 << 20
DEFAULT_MAX_CONCURRENCY = 32
DEFAULT_REQUEST_TIMEOUT = 60.0
#: The service's callers are the platform's own processes on loopback or a private network,
#: sending uploads they already hold: headers in one packet, bodies at tens of MB/s. A sender
#: far slower than that is holding a request slot, not uploading.
DEFAULT_RECEIVE_TIMEOUT = 5.0
DEFAULT_MIN_RECEIVE_RATE = 1 << 20


class PictrsReview(Enum):
    """What the pict-rs endpoint answers for an upload whose verdict is REVIEW.

    pict-rs has no "hold for review" state: an accepted upload is published at once. So
    ``REFUSE`` (the default) keeps anything a moderator has not seen off the site; ``ACCEPT``
    publishes it while it waits in the review queue.
    """

    ACCEPT = "accept"
    REFUSE = "refuse"

    @classmethod
    def parse(cls, value: PictrsReview | str) -> PictrsReview:
        if isinstance(value, PictrsReview):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ConfigError(f"pictrs_review must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``create_app`` needs.

    - ``max_body_bytes``: largest request body; larger ones get 413 while still streaming.
    - ``max_concurrency``: requests that may hold an upload in memory at once; one more gets
      503 with ``Retry-After`` (memory stays below ``max_concurrency * max_body_bytes``).
    - ``scan_threads``: scans running at once (default: the CPU count); admitted requests
      beyond it wait their turn.
    - ``request_timeout``: seconds for receiving the body and scanning it.
    - ``receive_timeout``: seconds a connection may take to send its request headers, and a
      body to start arriving; after that the body must keep ``min_receive_rate`` bytes a
      second on average (408 otherwise), so slow senders cannot hold the request slots.
    - ``refusal_status``: the status the pict-rs endpoint answers for a refused upload.
    - ``pictrs_review``: whether that endpoint accepts or refuses uploads that go to review
      (``PictrsReview``; default refuse).
    - ``scanner_options``: overrides of the data directory's ``ScannerSettings`` (the
      fields ``ScannerSettings.names(service=True)`` lists; ``strict`` is not one: bad media
      belongs in the verdict), as JSON-safe values (``limits`` as a dict).
    """

    home: str
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    scan_threads: int | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    receive_timeout: float = DEFAULT_RECEIVE_TIMEOUT
    min_receive_rate: float = DEFAULT_MIN_RECEIVE_RATE
    refusal_status: int = 451
    pictrs_review: PictrsReview = PictrsReview.REFUSE
    scanner_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive_int("max_body_bytes", self.max_body_bytes)
        _positive_int("max_concurrency", self.max_concurrency)
        if self.scan_threads is not None:
            _positive_int("scan_threads", self.scan_threads)
        for name in ("request_timeout", "receive_timeout", "min_receive_rate"):
            _positive_number(name, getattr(self, name))
        object.__setattr__(self, "pictrs_review", PictrsReview.parse(self.pictrs_review))
        status = self.refusal_status
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ConfigError(
                f"refusal_status must be an HTTP error status (400-599), got {status!r}"
            )
        if self.token is not None and (not isinstance(self.token, str) or not self.token.strip()):
            raise ConfigError("the token must be a non-empty string")
        # Validated now, in the parent, so a typo fails `uploadscan serve` before any worker.
        ScannerSettings.from_mapping(
            self.scanner_options, where="scanner options for the service", service=True
        )

    @property
    def threads(self) -> int:
        return self.scan_threads or os.cpu_count() or 1

    def scanner_settings(self) -> ScannerSettings:
        """The data directory's settings with this service's overrides applied."""
        base = ScannerSettings.load(self.home_path)
        return base.replace(**self.scanner_options) if self.scanner_options else base

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        options = dict(self.scanner_options)
        if isinstance(options.get("limits"), Limits):
            options["limits"] = asdict(options["limits"])
        for name in ("fail_mode", "non_media"):
            if isinstance(options.get(name), Action):
                options[name] = options[name].value
        data["scanner_options"] = options
        data["pictrs_review"] = self.pictrs_review.value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{ENV_CONFIG} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{ENV_CONFIG} must hold a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "home" not in data:
            raise ConfigError(f"{ENV_CONFIG}: unknown keys {unknown} or no 'home'")
        return cls(**data)

    @classmethod
    def from_env(cls) -> ServeSettings:
        text = os.environ.get(ENV_CONFIG)
        if not text:
            raise ConfigError(f"{ENV_CONFIG} is not set; start the service with `uploadscan serve`")
        return cls.from_json(text)

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser()


def _positive_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
