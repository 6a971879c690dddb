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
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError

if TYPE_CHECKING:
    from ..hashing._protocol import HashType

__all__ = [
    "DEFAULT_NETWORK_MAX_AGE",
    "BatchResult",
    "Entry",
    "EntryUpsert",
    "HashList",
    "ListKind",
    "ListSettings",
    "SourceKind",
    "SyncResult",
    "SyncState",
]

#: A list synced over the network (a feed, TCAP, ThreatExchange) counts as stale when its last
#: successful sync is older than this, unless its ``max_age_seconds`` says otherwise: a feed
#: that froze or expired must not keep serving old entries without a word.
DEFAULT_NETWORK_MAX_AGE = 2 * 24 * 3600.0


class ListKind(Enum):
    """What a match against the list does: block the upload, queue it for review, or allow it
    (an allowlist overrides matches on the other lists)."""

    BLOCK = "block"
    REVIEW = "review"
    ALLOW = "allow"

    @classmethod
    def parse(cls, value: str | ListKind) -> ListKind:
        if isinstance(value, ListKind):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"list kind must be block, review or allow, got {value!r}") from None


class SourceKind(Enum):
    """Where a list's entries come from, which decides whether it can go stale.

    ``NONE``: no source, entries written by uploadscan itself (an allow list of overturned
    reviews). ``LOCAL``: a list built from the platform's own media (``local:``), never
    synced. ``FILE``: a list file on disk. ``NETWORK``: a feed, TCAP or ThreatExchange.
    """

    NONE = "none"
    LOCAL = "local"
    FILE = "file"
    NETWORK = "network"

    @classmethod
    def of(cls, source: str | None) -> SourceKind:
        if not source:
            return cls.NONE
        scheme = source.split(":", 1)[0].lower() if ":" in source else ""
        if scheme == "local":
            return cls.LOCAL
        if scheme in ("http", "https", "tcap", "threatexchange"):
            return cls.NETWORK
        return cls.FILE

    @property
    def synced(self) -> bool:
        """Whether entries arrive by sync (and a list of this kind can be out of date)."""
        return self in (SourceKind.FILE, SourceKind.NETWORK)


class SyncState(Enum):
    """Whether a list's entries can be trusted to be current."""

    CURRENT = "current"
    NEVER_SYNCED = "never_synced"
    STALE = "stale"


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
    - ``max_age_seconds``: the list counts as stale when its last successful sync is older;
      ``None`` takes the source's default (``DEFAULT_NETWORK_MAX_AGE`` for network sources,
      never for list files).
    - ``video_coverage``: fraction of a listed video's time its matched frames must cover.
    - ``video_upload_fraction``: fraction of the upload's frames that must match.
    - ``warn_only``: a never-synced or stale list is named in every verdict's reasons but
      does not force the scanner's fail mode.
    - ``hash_settings``: settings that hash-type plug-ins declare (their thresholds), by name.
    """

    pdq_threshold: int = 31
    pdq_action_distance: int | None = None
    min_quality: int = 50
    labels: tuple[str, ...] = ()
    max_age_seconds: float | None = None
    video_coverage: float = 0.8
    video_upload_fraction: float = 0.0
    warn_only: bool = False
    hash_settings: Mapping[str, float] = field(default_factory=dict)

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
        if not isinstance(self.warn_only, bool):
            raise ConfigError(f"warn_only must be true or false, got {self.warn_only!r}")
        object.__setattr__(self, "hash_settings", _check_hash_settings(self.hash_settings))

    def get(self, setting: str) -> float | None:
        """The value of a hash type's setting (``pdq_threshold``, a plug-in's threshold...),
        or ``None`` when the list leaves it at the type's default."""
        if setting in _OWN_FIELDS:
            value = getattr(self, setting)
            return None if value is None else float(value)
        return self.hash_settings.get(setting)

    def threshold(self, hash_type: HashType) -> float:
        """The largest distance (smallest score) that counts as a match for ``hash_type``."""
        setting = hash_type.threshold_setting
        value = self.get(setting) if setting is not None else None
        return float(hash_type.default_threshold) if value is None else value

    def max_age(self, source: SourceKind) -> float | None:
        """Seconds after the last sync at which the list is stale (``None``: never)."""
        if self.max_age_seconds is not None:
            return self.max_age_seconds
        return DEFAULT_NETWORK_MAX_AGE if source is SourceKind.NETWORK else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``labels`` as a list; plug-in settings as top-level keys)."""
        data = asdict(self)
        data["labels"] = list(self.labels)
        data.update(data.pop("hash_settings"))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ListSettings:
        """Parse settings, rejecting unknown keys and bad values with ``ConfigError``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"list settings must be a mapping, got {type(data).__name__}")
        known = _OWN_FIELDS - {"hash_settings"}
        declared = _declared_settings()
        unknown = sorted(set(data) - known - set(declared))
        if unknown:
            raise ConfigError(
                f"unknown list setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(known | set(declared)))}"
            )
        kwargs = {k: v for k, v in data.items() if k in known}
        if "labels" in kwargs and isinstance(kwargs["labels"], list):
            kwargs["labels"] = tuple(kwargs["labels"])
        plugin = {k: v for k, v in data.items() if k in declared and k not in known}
        return cls(**kwargs, hash_settings=plugin)

    @classmethod
    def known(cls) -> list[str]:
        """Every setting name a list takes: the own fields and the hash types' thresholds."""
        return sorted((_OWN_FIELDS - {"hash_settings"}) | set(_declared_settings()))

    def updated(self, changes: Mapping[str, Any]) -> ListSettings:
        """A copy with ``changes`` applied (validated as ``from_dict`` does)."""
        return ListSettings.from_dict({**self.to_dict(), **changes})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ListSettings:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"list settings are not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _declared_settings() -> dict[str, HashType]:
    """Setting name to the registered hash type that declares it (thresholds, bands)."""
    from ..hashing._protocol import declared_settings
    from ..hashing._registry import registry

    out: dict[str, HashType] = {}
    for hash_type in registry:
        for setting in declared_settings(hash_type):
            out[setting] = hash_type
    return out


def _check_hash_settings(values: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"hash_settings must be a mapping, got {values!r}")
    declared = _declared_settings()
    out: dict[str, float] = {}
    for name, value in values.items():
        hash_type = declared.get(name)
        if hash_type is None or name in _OWN_FIELDS:
            raise ConfigError(f"no registered hash type declares the list setting {name!r}")
        if value is not None:
            out[name] = hash_type.check_threshold(name, value)
    return out


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

    @property
    def source_kind(self) -> SourceKind:
        return SourceKind.of(self.source)

    def sync_state(self, now: float) -> SyncState:
        """Whether the entries are current: a list with a source that never completed a
        sync, or whose last sync is older than its maximum age, is not."""
        source = self.source_kind
        if not source.synced:
            return SyncState.CURRENT
        if self.last_sync is None:
            return SyncState.NEVER_SYNCED
        max_age = self.settings.max_age(source)
        if max_age is not None and now - self.last_sync > max_age:
            return SyncState.STALE
        return SyncState.CURRENT


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


@dataclass(frozen=True)
class SyncResult:
    """What one list's sync did. ``error`` is set (and nothing after the failing batch was
    applied) when ``sync_all``/``sync_lists`` caught a failure instead of raising;
    ``timed_out`` says the failure was the list's whole-sync deadline."""

    list_name: str
    source: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    full_refetch: bool = False
    checkpoint: str | None = None
    version: int | None = None
    seconds: float = 0.0
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        return {
            "list": self.list_name,
            "source": self.source,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": dict(self.skipped),
            "batches": self.batches,
            "full_refetch": self.full_refetch,
            "version": self.version,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "timed_out": self.timed_out,
        }


_OWN_FIELDS = frozenset(ListSettings.__dataclass_fields__)
