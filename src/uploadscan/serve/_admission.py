"""Admission control: how many requests may hold an upload at once, across threads.

A request takes a slot before its body is read and gives it back only when its scan has really
ended. With a deadline or a disconnect the request may be abandoned while its scan thread runs
on; the slot then travels with the thread, so the bounds (memory: slots x body limit; CPU: the
threads) hold even when clients give up.
"""

from __future__ import annotations

import threading

__all__ = ["Admission", "Ticket"]


class Admission:
    """A non-blocking counting semaphore usable from both the event loop and worker threads."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._used >= self._limit:
                return False
            self._used += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._used -= 1


class Ticket:
    """One admitted request's slot, released exactly once: by the request if its scan never
    started, otherwise by the scan thread when it ends (even if the request was abandoned)."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._lock = threading.Lock()
        self._state = "held"  # held -> running -> released, or held -> released

    def start(self) -> bool:
        with self._lock:
            if self._state != "held":
                return False
            self._state = "running"
            return True

    def finish(self) -> None:
        with self._lock:
            self._state = "released"
            self._admission.release()

    def release_unless_running(self) -> None:
        with self._lock:
            if self._state == "held":
                self._state = "released"
                self._admission.release()
