"""The answer an upload handler gets: an action and the evidence behind it.

A verdict is what a moderator reads, what the audit log stores and what a transparency report
counts, so it carries everything needed to explain the decision later (which list, which entry,
how close, which list version) and nothing of the content itself.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigError


class Action(enum.Enum):
    """What the platform should do with the upload. Ordered by severity."""

    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def parse(cls, value: str | Action) -> Action:
        if isinstance(value, Action):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            choices = "allow, review, block"
            raise ConfigError(f"unknown action {value!r}; use one of: {choices}") from None


_SEVERITY = {Action.ALLOW: 0, Action.REVIEW: 1, Action.BLOCK: 2}


def most_severe(actions: list[Action] | tuple[Action, ...]) -> Action:
    return max(actions, key=_SEVERITY.__getitem__, default=Action.ALLOW)


@dataclass(frozen=True, slots=True)
class Match:
    """One listed entry that matched the upload.

    ``action`` is what this match alone calls for after the list's policy (its kind and distance
    bands). For a listed video, ``timestamps`` are the upload's matching frame times and
    ``coverage`` the share of the listed video's time that matched.
    """

    list_name: str
    list_kind: str
    list_version: int
    entry_id: int
    hash_type: str
    value: str
    distance: int
    action: Action
    labels: tuple[str, ...] = ()
    external_id: str | None = None
    query: str | None = None
    timestamps: tuple[float, ...] = ()
    coverage: float | None = None
    video: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "list": self.list_name,
            "list_kind": self.list_kind,
            "list_version": self.list_version,
            "entry_id": self.entry_id,
            "external_id": self.external_id,
            "hash_type": self.hash_type,
            "value": self.value,
            "distance": self.distance,
            "action": self.action.value,
            "labels": list(self.labels),
        }
        if self.query is not None:
            out["query"] = self.query
        if self.video is not None:
            out["video"] = self.video
            out["coverage"] = None if self.coverage is None else round(self.coverage, 4)
            out["timestamps"] = [round(t, 3) for t in self.timestamps]
        return out


@dataclass(frozen=True, slots=True)
class ScanErrorInfo:
    """Why part of a scan failed: the error's type name and its message."""

    type: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


def new_verdict_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one upload (or one set of precomputed hashes).

    ``id`` is stable and unique so that a later review decision can refer to it. ``hashes`` maps
    hash-type name to the values computed or given; ``list_versions`` the version of every list
    consulted; ``reasons`` short human-readable explanations (a stale list, a fail-mode decision).
    """

    action: Action
    matches: tuple[Match, ...] = ()
    hashes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    errors: tuple[ScanErrorInfo, ...] = ()
    list_versions: dict[str, int] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    media_type: str | None = None
    elapsed_ms: float = 0.0
    id: str = field(default_factory=new_verdict_id)
    created: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: only str, int, float, bool, None, lists and dicts."""
        return {
            "id": self.id,
            "action": self.action.value,
            "matches": [m.to_dict() for m in self.matches],
            "hashes": {k: list(v) for k, v in self.hashes.items()},
            "errors": [e.to_dict() for e in self.errors],
            "list_versions": dict(self.list_versions),
            "reasons": list(self.reasons),
            "media_type": self.media_type,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "created": self.created,
        }


def audit_record(verdict: Verdict, sha256: str | None) -> dict[str, Any]:
    """The decision-log row for ``verdict``: hashes, outcome and list versions, no content.
    REVIEW verdicts enter the review queue as pending."""
    return {
        "verdict_id": verdict.id,
        "time": verdict.created,
        "sha256": sha256,
        "action": verdict.action.value,
        "matches": [m.to_dict() for m in verdict.matches],
        "list_versions": verdict.list_versions,
        "errors": [e.to_dict() for e in verdict.errors],
        "review_status": "pending" if verdict.action is Action.REVIEW else None,
    }
