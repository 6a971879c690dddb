"""The three answers an upload can get, ordered by severity.

Shared vocabulary of every layer: the store records actions in the decision log, policy
combines them, verdicts carry them, adapters map them to HTTP statuses and exit codes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

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
            return cls(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(a.value for a in cls)
            raise ConfigError(f"unknown action {value!r}; use one of: {choices}") from None


_SEVERITY = {Action.ALLOW: 0, Action.REVIEW: 1, Action.BLOCK: 2}


def most_severe(actions: Iterable[Action]) -> Action:
    return max(actions, key=_SEVERITY.__getitem__, default=Action.ALLOW)
