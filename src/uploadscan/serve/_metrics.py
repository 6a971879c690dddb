"""Prometheus counters for the sidecar, written by hand in the text exposition format.

The service needs five series (requests by route and status, verdicts by action, scan errors,
in-flight requests, a latency histogram); the text format for those is a few dozen lines, so a
dependency (``prometheus_client``) would not earn its place. The numbers are per process: with
``--workers N`` each scrape answers from whichever worker accepted the connection, so counters
are labelled with the worker's pid and dashboards should ``sum without (pid)``.

Format reference: https://prometheus.io/docs/instrumenting/exposition_formats/
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import defaultdict

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Latency buckets in seconds: a scan is a few ms to a few hundred ms, a video seconds.
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

_Labels = tuple[tuple[str, str], ...]


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(BUCKETS, seconds)
        if i < len(BUCKETS):
            self.counts[i] += 1
        self.count += 1
        self.total += seconds


class Metrics:
    """Thread-safe counters, a gauge and a histogram; ``render()`` gives the text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[_Labels, int] = defaultdict(int)
        self._verdicts: dict[_Labels, int] = defaultdict(int)
        self._scan_errors: dict[_Labels, int] = defaultdict(int)
        self._rejected: dict[_Labels, int] = defaultdict(int)
        self._latency: dict[_Labels, _Histogram] = defaultdict(_Histogram)
        self._in_flight = 0
        self._pid = str(os.getpid())

    # ------------------------------------------------------------------ recording

    def request_started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def request_finished(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self._requests[(("route", route), ("status", str(status)))] += 1
            self._latency[(("route", route),)].observe(seconds)

    def verdict(self, route: str, action: str, error_types: list[str]) -> None:
        """One verdict returned (``route`` tells scans from hash lookups)."""
        with self._lock:
            self._verdicts[(("route", route), ("action", action))] += 1
            for name in error_types:
                self._scan_errors[(("type", name),)] += 1

    def rejected(self, reason: str) -> None:
        """A request refused before any scanning: saturated, too large, timed out, bad auth."""
        with self._lock:
            self._rejected[(("reason", reason),)] += 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # ------------------------------------------------------------------ exposition

    def render(self) -> str:
        with self._lock:
            out: list[str] = []
            self._counter(
                out,
                "uploadscan_http_requests_total",
                "HTTP requests answered, by route and status.",
                self._requests,
            )
            self._counter(
                out,
                "uploadscan_verdicts_total",
                "Verdicts returned, by route (scan, lookup, pictrs, hma) and action.",
                self._verdicts,
            )
            self._counter(
                out,
                "uploadscan_scan_errors_total",
                "Uploads that could not be hashed, by error type (the verdict carries them).",
                self._scan_errors,
            )
            self._counter(
                out,
                "uploadscan_rejected_requests_total",
                "Requests refused before scanning, by reason.",
                self._rejected,
            )
            out.append("# HELP uploadscan_in_flight_requests Requests being handled now.")
            out.append("# TYPE uploadscan_in_flight_requests gauge")
            out.append(f'uploadscan_in_flight_requests{{pid="{self._pid}"}} {self._in_flight}')
            name = "uploadscan_request_duration_seconds"
            out.append(f"# HELP {name} Time from request start to response, by route.")
            out.append(f"# TYPE {name} histogram")
            for labels, hist in sorted(self._latency.items()):
                base = self._labels(labels)
                cumulative = 0
                for bound, n in zip(BUCKETS, hist.counts, strict=True):
                    cumulative += n
                    out.append(f'{name}_bucket{{{base},le="{_num(bound)}"}} {cumulative}')
                out.append(f'{name}_bucket{{{base},le="+Inf"}} {hist.count}')
                out.append(f"{name}_sum{{{base}}} {_num(hist.total)}")
                out.append(f"{name}_count{{{base}}} {hist.count}")
            return "\n".join(out) + "\n"

    def _counter(
        self, out: list[str], name: str, help_text: str, values: dict[_Labels, int]
    ) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} counter")
        for labels, value in sorted(values.items()):
            out.append(f"{name}{{{self._labels(labels)}}} {value}")

    def _labels(self, labels: _Labels) -> str:
        parts = [f'{k}="{_escape(v)}"' for k, v in labels]
        parts.append(f'pid="{self._pid}"')
        return ",".join(parts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return repr(float(value))
