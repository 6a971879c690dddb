"""A whole-sync deadline for one list, seen by every blocking step of that list's sync.

Per-request limits (``HttpOptions``) bound one download, but they do not bound a sync: a
source makes many requests (TCAP and ThreatExchange page, a feed fetches a chain of deltas),
each retried, and a server that trickles bytes keeps every one of them alive until its own
limit. One such server used to hold ``uploadscan sync`` for ten minutes per request while
every list behind it waited.

So the runner gives each list an absolute deadline and runs the list's whole sync inside
``sync_deadline``. ``http_get`` never waits past it (socket timeouts are cut to the time
left, the body loop and the retry backoff check it), and the runner checks it before each
batch is applied and while a batch streams into the store. Whatever trips it raises
``SyncTimeoutError``; the batch in flight is not applied, so the list keeps what it had.
A context variable carries the deadline, so sources need no extra argument and a deadline
set on one list's thread never reaches another list's sync. A ``stop`` event ends the sync
at the same checkpoints before its time, when the process is interrupted (Ctrl-C) while
other lists' threads still run.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from .._errors import ConfigError, SyncError, SyncTimeoutError

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "Deadline",
    "SyncTimeoutError",
    "check_deadline",
    "current_deadline",
    "sync_deadline",
]

# Fifteen minutes: a million-entry list file ingests in well under a minute and a full TCAP
# or ThreatExchange refetch is a few hundred pages, so a healthy sync finishes far inside it,
# while a stuck one frees the next --watch round long before a list's max_age runs out.
DEFAULT_DEADLINE_SECONDS = 900.0


@dataclass(frozen=True)
class Deadline:
    """``at`` is a ``time.monotonic()`` value; ``seconds`` and ``label`` are for messages;
    once ``stop`` is set the deadline counts as reached."""

    at: float
    seconds: float
    label: str
    stop: threading.Event | None = None

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def remaining(self) -> float:
        return 0.0 if self.stopped() else self.at - time.monotonic()

    def expired(self) -> bool:
        return self.stopped() or time.monotonic() >= self.at

    def error(self, doing: str) -> SyncError:
        if self.stopped():
            return SyncError(
                f"{self.label}: sync stopped {doing}; the batch in flight was not applied"
            )
        return SyncTimeoutError(
            f"{self.label}: sync deadline of {self.seconds:g} s reached {doing}; "
            "the batch in flight was not applied",
            seconds=self.seconds,
        )


_CURRENT: ContextVar[Deadline | None] = ContextVar("uploadscan_sync_deadline", default=None)


@contextmanager
def sync_deadline(
    seconds: float | None, label: str, stop: threading.Event | None = None
) -> Iterator[Deadline | None]:
    """Run the body under a deadline ``seconds`` from now (``None``: no time limit, though
    ``stop`` still ends it).

    Nested use keeps the earlier of the two deadlines, so a caller's bound always holds.
    """
    if seconds is None and stop is None:
        yield _CURRENT.get()
        return
    if seconds is not None and not seconds > 0:
        raise ConfigError(f"a sync deadline must be a positive number of seconds, got {seconds}")
    at = time.monotonic() + (seconds if seconds is not None else float("inf"))
    deadline = Deadline(at, seconds if seconds is not None else float("inf"), label, stop)
    outer = _CURRENT.get()
    if outer is not None:
        earlier = outer if outer.at < deadline.at else deadline
        deadline = dataclasses.replace(earlier, stop=deadline.stop or outer.stop)
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


def current_deadline() -> Deadline | None:
    """The deadline of the sync running in this context, if any."""
    return _CURRENT.get()


def check_deadline(doing: str) -> None:
    """``SyncTimeoutError`` if the current sync's deadline has passed."""
    deadline = _CURRENT.get()
    if deadline is not None and deadline.expired():
        raise deadline.error(doing)
