"""Transparency-report numbers from the decision log.

Platforms that match against terrorist-content hash lists are expected (and, under the EU's
TCO and DSA rules, often obliged) to publish how many items were actioned, on what basis, and
how many decisions were reversed on review. This module counts exactly that from the audit log:
by action, list, label, hash type, review outcome and day. It sees hashes and outcomes only.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from ._action import Action
from .store._audit import DecisionOrigin, DecisionRecord, ReviewStatus

ACTIONS = tuple(a.value for a in Action)
REVIEW_STATUSES = tuple(s.value for s in ReviewStatus)
#: Decisions about content the platform holds: uploads, and published content checked by the
#: batch jobs. Lookups of precomputed hashes are counted apart: they are not uploads, and the
#: same content may be looked up many times.
CONTENT_ORIGINS = (DecisionOrigin.UPLOAD, DecisionOrigin.RETRO, DecisionOrigin.BACKFILL)


def build_report(
    decisions: Iterable[DecisionRecord],
    *,
    since: float | None = None,
    until: float | None = None,
) -> dict[str, Any]:
    """Aggregate decision records (as ``Store.decisions`` returns them) into report counts.

    The sections by action, list, label, hash type, review outcome and day count decisions
    about content (uploads and batch checks of published content); ``lookups`` counts hash
    lookups (``/v1/lookup``) by action, apart; ``by_origin`` shows every source.
    """
    by_action: Counter[str] = Counter()
    by_origin: Counter[str] = Counter()
    lookups: Counter[str] = Counter()
    by_list: dict[str, Counter[str]] = defaultdict(Counter)
    by_label: Counter[str] = Counter()
    by_hash_type: Counter[str] = Counter()
    review: Counter[str] = Counter()
    by_day: dict[str, Counter[str]] = defaultdict(Counter)
    errors = 0
    total = 0
    for record in decisions:
        action = record.action.value
        by_origin[record.origin.value] += 1
        if record.origin not in CONTENT_ORIGINS:
            lookups[action] += 1
            continue
        total += 1
        by_action[action] += 1
        day = dt.datetime.fromtimestamp(record.time, dt.UTC).date().isoformat()
        by_day[day][action] += 1
        if record.errors:
            errors += 1
        if record.review_status is not None:
            review[record.review_status.value] += 1
        seen_lists: set[str] = set()
        seen_labels: set[str] = set()
        seen_types: set[str] = set()
        for match in record.matches:
            seen_lists.add(str(match.get("list")))
            seen_labels.update(str(label) for label in match.get("labels") or [])
            seen_types.add(str(match.get("hash_type")))
        for name in seen_lists:
            by_list[name][action] += 1
        by_label.update(seen_labels)
        by_hash_type.update(seen_types)
    return {
        "period": {"since": since, "until": until},
        "total": total,
        "scan_errors": errors,
        "by_origin": {o.value: by_origin.get(o.value, 0) for o in DecisionOrigin},
        "by_action": {a: by_action.get(a, 0) for a in ACTIONS},
        "lookups": {a: lookups.get(a, 0) for a in ACTIONS},
        "by_list": {name: dict(counts) for name, counts in sorted(by_list.items())},
        "by_label": dict(by_label.most_common()),
        "by_hash_type": dict(by_hash_type.most_common()),
        "review": {s: review.get(s, 0) for s in REVIEW_STATUSES},
        "by_day": {day: {a: c.get(a, 0) for a in ACTIONS} for day, c in sorted(by_day.items())},
    }


def report_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False)


def report_csv(report: Mapping[str, Any]) -> str:
    """One row per (section, key, action-or-measure, count): easy to pivot in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("section", "key", "measure", "count"))
    writer.writerow(("total", "", "decisions", report["total"]))
    writer.writerow(("total", "", "scan_errors", report["scan_errors"]))
    for origin, count in report["by_origin"].items():
        writer.writerow(("by_origin", origin, "decisions", count))
    for action, count in report["by_action"].items():
        writer.writerow(("by_action", action, "decisions", count))
    for action, count in report["lookups"].items():
        writer.writerow(("lookups", action, "lookups", count))
    for name, counts in report["by_list"].items():
        for action, count in counts.items():
            writer.writerow(("by_list", name, action, count))
    for label, count in report["by_label"].items():
        writer.writerow(("by_label", label, "decisions", count))
    for hash_type, count in report["by_hash_type"].items():
        writer.writerow(("by_hash_type", hash_type, "decisions", count))
    for status, count in report["review"].items():
        writer.writerow(("review", status, "decisions", count))
    for day, counts in report["by_day"].items():
        for action, count in counts.items():
            writer.writerow(("by_day", day, action, count))
    return buffer.getvalue()


_COLOURS = {"allow": "#6a9f58", "review": "#e0a526", "block": "#c8453c"}


def _chart_svg(by_day: Mapping[str, Mapping[str, int]]) -> str:
    """A stacked bar per day (flagged decisions only: review and block)."""
    days = list(by_day)
    if not days:
        return "<p>No decisions in this period.</p>"
    width, height, pad = 720, 240, 30
    peak = max((by_day[d]["review"] + by_day[d]["block"] for d in days), default=0) or 1
    bar = max(2.0, (width - 2 * pad) / len(days) - 2)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="Flagged uploads per day">'
    ]
    for i, day in enumerate(days):
        x = pad + i * (bar + 2)
        y = float(height - pad)
        for action in ("block", "review"):
            count = by_day[day][action]
            h = (height - 2 * pad) * count / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{_COLOURS[action]}"><title>{html.escape(day)} {action}: {count}'
                "</title></rect>"
            )
    parts.append(
        f'<text x="{pad}" y="{height - 8}" font-size="11">{html.escape(days[0])}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"{html.escape(days[-1])}</text>"
        f'<text x="{pad}" y="16" font-size="11">peak {peak} flagged/day</text></svg>'
    )
    return "".join(parts)


def _table(title: str, headers: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def report_html(report: Mapping[str, Any]) -> str:
    period = report["period"]

    def when(ts: float | None) -> str:
        if ts is None:
            return "-"
        return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")

    sections = [
        f"<h1>uploadscan transparency report</h1><p>Period: {html.escape(when(period['since']))}"
        f" to {html.escape(when(period['until']))}. Decisions on content: {report['total']}; "
        f"uploads that could not be hashed: {report['scan_errors']}; hash lookups (not "
        f"uploads, counted apart): {sum(report['lookups'].values())}.</p>",
        "<h2>Flagged uploads per day</h2>"
        + _chart_svg(report["by_day"])
        + '<p><span style="color:#c8453c">&#9632;</span> block '
        '<span style="color:#e0a526">&#9632;</span> review</p>',
        _table("By action", ("action", "decisions"), report["by_action"].items()),
        _table("Hash lookups by action", ("action", "lookups"), report["lookups"].items()),
        _table("By origin", ("origin", "decisions"), report["by_origin"].items()),
        _table(
            "By list",
            ("list", *ACTIONS),
            ((n, *(c.get(a, 0) for a in ACTIONS)) for n, c in report["by_list"].items()),
        ),
        _table("By label", ("label", "decisions"), report["by_label"].items()),
        _table("By hash type", ("hash type", "decisions"), report["by_hash_type"].items()),
        _table("Review outcomes", ("status", "decisions"), report["review"].items()),
    ]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>uploadscan report'
        f"</title><style>{style}</style></head><body>{''.join(sections)}</body></html>\n"
    )
