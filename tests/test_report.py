"""Transparency report: counts computed from decision records, in three formats."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser

from uploadscan import Action
from uploadscan._report import build_report, report_csv, report_html, report_json
from uploadscan.store._audit import DecisionOrigin, DecisionRecord, ReviewStatus

DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def records() -> list[DecisionRecord]:
    def match(list_name: str, labels: list[str], hash_type: str = "pdq") -> dict[str, object]:
        return {"list": list_name, "labels": labels, "hash_type": hash_type}

    return [
        DecisionRecord(
            "a",
            Action.BLOCK,
            T0 + 10,
            matches=(match("tcap", ["isis"]), match("tcap", ["isis"], "md5")),
        ),
        DecisionRecord(
            "b",
            Action.REVIEW,
            T0 + 20,
            matches=(match("gifct", ["video"]),),
            review_status=ReviewStatus.OVERTURNED,
        ),
        DecisionRecord("c", Action.ALLOW, T0 + DAY + 5),
        DecisionRecord(
            "d",
            Action.REVIEW,
            T0 + DAY + 6,
            errors=({"type": "CorruptMediaError", "message": "truncated"},),
            review_status=ReviewStatus.PENDING,
        ),
        # Lookups of precomputed hashes are counted apart, never as flagged uploads.
        DecisionRecord(
            "e",
            Action.BLOCK,
            T0 + 30,
            matches=(match("tcap", ["isis"]),),
            origin=DecisionOrigin.LOOKUP,
        ),
    ]


def test_counts() -> None:
    report = build_report(records())
    assert report["total"] == 4
    assert report["scan_errors"] == 1
    assert report["by_action"] == {"allow": 1, "review": 2, "block": 1}
    assert report["by_list"] == {"gifct": {"review": 1}, "tcap": {"block": 1}}
    assert report["by_label"] == {"isis": 1, "video": 1}
    assert report["by_hash_type"] == {"pdq": 2, "md5": 1}
    assert report["review"] == {"pending": 1, "confirmed": 0, "overturned": 1}
    assert report["lookups"] == {"allow": 0, "review": 0, "block": 1}
    assert report["by_origin"] == {"upload": 4, "lookup": 1, "retro": 0, "backfill": 0}
    assert report["by_day"] == {
        "2026-01-01": {"allow": 0, "review": 1, "block": 1},
        "2026-01-02": {"allow": 1, "review": 1, "block": 0},
    }


def test_formats_round_trip() -> None:
    report = build_report(records())
    assert json.loads(report_json(report)) == json.loads(json.dumps(report))
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert {"section": "by_list", "key": "tcap", "measure": "block", "count": "1"} in rows
    page = report_html(report)

    class Collector(HTMLParser):
        rects = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "rect":
                self.rects += 1

    parser = Collector()
    parser.feed(page)
    assert parser.rects == 2 * len(report["by_day"])  # block + review bar per day
    assert "tcap" in page and "<svg" in page
