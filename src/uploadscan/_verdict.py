"""The answer an upload handler gets: an action and the evidence behind it.

A verdict is what a moderator reads, what the audit log stores and what a transparency report
counts, so it carries everything needed to explain the decision later (which list, which entry,
how close, which list version) and nothing of the content itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._action import Action, most_severe
from .store._lists import ListKind

__all__ = ["Action", "Match", "ScanErrorInfo", "Verdict", "most_severe", "new_verdict_id"]


@dataclass(frozen=True, slots=True)
class Match:
    """One listed entry that matched the upload.

    ``distance`` is what the hash type's comparison measured: a Hamming distance for PDQ and
    the digests (0), a similarity score for score-based types. ``action`` is what this match
    alone calls for after the list's policy (its kind and review band). For a listed video,
    ``timestamps`` are the upload's matching frame times and ``coverage`` the share of the
    listed video's time that matched. ``evidence`` holds what a type's own verification found
    (scores, a time offset, a fitted transform), for the moderator who reads the match.
    """

    list_name: str
    list_kind: ListKind
    list_version: int
    entry_id: int
    hash_type: str
    value: str
    distance: float
    action: Action
    labels: tuple[str, ...] = ()
    external_id: str | None = None
    query: str | None = None
    timestamps: tuple[float, ...] = ()
    coverage: float | None = None
    video: str | None = None
    evidence: Mapping[str, float | int | str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "list": self.list_name,
            "list_kind": self.list_kind.value,
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
        if self.evidence is not None:
            out["evidence"] = dict(self.evidence)
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
    consulted; ``reasons`` short human-readable explanations (a stale list, a fail-mode decision,
    an upload that is not media).
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
