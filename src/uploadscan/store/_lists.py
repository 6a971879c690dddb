"""What a hash list is: its name, what matching it means, and how its entries look.

These are plain frozen values handed out by the store; they never hold a database handle, so
they can be passed between threads, logged and compared freely. ``ListSettings`` is the one
piece a platform edits by hand (CLI, config file), so it validates strictly and names the bad
key instead of silently ignoring a typo such as ``pdq_treshold``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from .._errors import ConfigError

__all__ = [
    "BatchResult",
    "Entry",
    "EntryUpsert",
    "HashList",
    "ListKind",
    "ListSettings",
]


class ListKind(Enum):
    """What a match against the list does: block the upload, queue it for review, or allow it
    (an allowlist overrides matches on the other lists)."""

    BLOCK = "block"
    REVIEW = "review"
    ALLOW = "allow"


@dataclass(frozen=True)
class ListSettings:
    """Per-list matching policy.

    - ``pdq_threshold``: largest PDQ Hamming distance that counts as a match at all (31 is the
      industry convention).
    - ``pdq_action_distance``: largest distance that takes the list's own action; matches
      farther away, up to ``pdq_threshold``, go to REVIEW instead. ``None`` means the whole
      range up to ``pdq_threshold`` takes the list's action.
    - ``min_quality``: uploads whose PDQ quality is below this are not matched (PDQ of a
      near-flat image is noise).
    - ``labels``: only entries carrying at least one of these labels act; empty means all.
    - ``max_age_seconds``: the list counts as stale when its last successful sync is older.
    - ``video_coverage``: fraction of a listed video's time its matched frames must cover.
    - ``video_upload_fraction``: fraction of the upload's frames that must match.
    """

    pdq_threshold: int = 31
    pdq_action_distance: int | None = None
    min_quality: int = 50
    labels: tuple[str, ...] = ()
    max_age_seconds: float | None = None
    video_coverage: float = 0.8
    video_upload_fraction: float = 0.0

    def __post_init__(self) -> None:
        _check_int("pdq_threshold", self.pdq_threshold, 0, 256)
        if self.pdq_action_distance is not None:
            _check_int("pdq_action_distance", self.pdq_action_distance, 0, self.pdq_threshold)
        _check_int("min_quality", self.min_quality, 0, 100)
        labels = self.labels
        if isinstance(labels, str) or not isinstance(labels, tuple | list):
            raise ConfigError(f"labels must be a list of strings, got {labels!r}")
        if not all(isinstance(x, str) and x for x in labels):
            raise ConfigError(f"labels must be non-empty strings, got {labels!r}")
        object.__setattr__(self, "labels", tuple(labels))
        if self.max_age_seconds is not None:
            _check_float("max_age_seconds", self.max_age_seconds, 0.0, math.inf)
            if self.max_age_seconds <= 0:
                raise ConfigError(f"max_age_seconds must be > 0, got {self.max_age_seconds!r}")
        _check_float("video_coverage", self.video_coverage, 0.0, 1.0)
        _check_float("video_upload_fraction", self.video_upload_fraction, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``labels`` as a list)."""
        data = asdict(self)
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ListSettings:
        """Parse settings, rejecting unknown keys and bad values with ``ConfigError``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"list settings must be a mapping, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown list setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        kwargs = dict(data)
        if "labels" in kwargs and isinstance(kwargs["labels"], list):
            kwargs["labels"] = tuple(kwargs["labels"])
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ListSettings:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"list settings are not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def _check_float(name: str, value: object, lo: float, hi: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not lo <= value <= hi
    ):
        raise ConfigError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class HashList:
    """A configured list as the store sees it.

    ``version`` is the store version of the last change to this list (entries or settings);
    ``last_sync`` is the unix time of the last successful sync (``None`` before the first).
    """

    name: str
    kind: ListKind
    source: str | None
    settings: ListSettings
    checkpoint: str | None
    version: int
    last_sync: float | None
    created: float
    entry_count: int
    counts_by_type: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EntryUpsert:
    """One entry to add or update in a batch. ``extra`` must be JSON-safe (vPDQ frame data)."""

    hash_type: str
    value: str
    labels: tuple[str, ...] = ()
    external_id: str | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class Entry:
    """A stored entry; ``value`` is the canonical lowercase hex form."""

    id: int
    list_name: str
    hash_type: str
    value: str
    labels: tuple[str, ...]
    external_id: str | None
    added: float
    extra: dict[str, Any] | None


@dataclass(frozen=True)
class BatchResult:
    """What one ``apply_batch`` changed, and the store version it committed as."""

    added: int
    updated: int
    removed: int
    unchanged: int
    version: int
