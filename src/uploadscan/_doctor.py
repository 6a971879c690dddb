"""``uploadscan doctor``: check a data directory and repair what can be rebuilt.

What can go wrong on disk, and what doctor does about it:

- The SQLite store is the source of truth. If it is damaged (``Store.open`` refuses it, or
  SQLite's full ``integrity_check`` reports anything), nothing derived from it can be trusted
  and doctor cannot repair it: the report says to move it aside and sync again (list
  settings must then be added again), and the exit status is 2.
- Index files are derived data. A missing or unparsable ``manifest.json``, an index file that
  is missing, fails its checksums, or disagrees with the manifest (entry count, store id,
  version) is a problem that ``--repair`` fixes: the damaged files are deleted and the matcher
  rebuilds them from the store (``Matcher.refresh(build=True)``), then everything is checked
  again. Other processes that mapped a deleted file keep using their mapping safely (POSIX).
- Lists whose sync never completed or is older than their ``max_age_seconds`` (or doctor's
  ``max_age``) are reported: sync writes ``last_sync`` only when a list is fully up to date,
  so a failed or interrupted sync shows up here. Only ``uploadscan sync`` can fix those.

Exit status: 0 healthy, 1 problems found (all repaired, ``--repair`` not given, or lists to
sync), 2 damage that could not be repaired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import StoreError, UploadScanError
from .index._files import check_index_files, rebuild_index_files
from .store._store import Store

STORE_FILENAME = "store.sqlite3"
INDEX_DIRNAME = "index"
MANIFEST_NAME = "manifest.json"
#: Without a list setting, a list not synced for this long is reported as stale.
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600.0

EXIT_HEALTHY = 0
EXIT_PROBLEMS = 1
EXIT_UNREPAIRABLE = 2


@dataclass
class Finding:
    """One problem. ``repaired`` once ``--repair`` fixed it; ``repairable`` if it could."""

    area: str  # "store", "index" or "list"
    message: str
    repairable: bool = True
    repaired: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "message": self.message,
            "repairable": self.repairable,
            "repaired": self.repaired,
        }


@dataclass
class DoctorReport:
    home: Path
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # what was looked at, for the report

    @property
    def exit_status(self) -> int:
        # A stale list is a problem for 'uploadscan sync', not damage doctor failed to fix.
        if any(not f.repaired and not f.repairable and f.area != "list" for f in self.findings):
            return EXIT_UNREPAIRABLE
        if self.findings:
            return EXIT_PROBLEMS
        return EXIT_HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "status": ("healthy", "problems", "unrepairable")[self.exit_status],
            "checked": list(self.checked),
            "findings": [f.to_dict() for f in self.findings],
        }


def diagnose(
    home: Path,
    *,
    repair: bool = False,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    now: float | None = None,
) -> DoctorReport:
    """Check the data directory ``home``; with ``repair``, rebuild damaged index files."""
    report = DoctorReport(home)
    store_path = home / STORE_FILENAME
    if not store_path.exists():
        report.findings.append(
            Finding("store", f"no store at {store_path}: nothing to check", repairable=False)
        )
        return report
    try:
        store = Store.open(store_path)
    except StoreError as exc:
        report.findings.append(_corrupt_store(store_path, str(exc)))
        return report
    with store:
        problems = store.check()
        report.checked.append(f"store integrity ({store_path})")
        if problems:
            detail = "; ".join(problems[:3])
            report.findings.append(_corrupt_store(store_path, f"integrity check: {detail}"))
            return report
        _check_lists(store, report, max_age_seconds, time.time() if now is None else now)
        index_dir = home / INDEX_DIRNAME
        index_findings = check_index(store, index_dir)
        report.checked.append(f"index files ({index_dir})")
        if index_findings and repair:
            _repair_index(store, index_dir, index_findings)
            remaining = check_index(store, index_dir)
            for finding in index_findings:
                finding.repaired = not remaining
                finding.repairable = not remaining
            for finding in remaining:
                finding.repairable = False
                finding.message = f"still damaged after repair: {finding.message}"
            report.findings += remaining
        report.findings += index_findings
    return report


def _corrupt_store(path: Path, detail: str) -> Finding:
    return Finding(
        "store",
        f"the store {path} is damaged ({detail}). It is the source of truth and cannot be "
        f"repaired in place: move it aside (mv {path} {path}.damaged), add the lists again "
        "(uploadscan lists add ...) and run 'uploadscan sync' to refetch them; the index "
        "files are rebuilt automatically.",
        repairable=False,
    )


def _check_lists(store: Store, report: DoctorReport, max_age: float, now: float) -> None:
    lists = store.lists()
    report.checked.append(f"{len(lists)} list(s)")
    for hash_list in lists:
        if not hash_list.source:
            continue  # filled by hand: nothing to sync
        if hash_list.last_sync is None:
            report.findings.append(
                Finding(
                    "list",
                    f"list {hash_list.name!r} has never completed a sync (a first sync failed "
                    "or was interrupted); run 'uploadscan sync' and read its STATUS column",
                    repairable=False,
                )
            )
            continue
        limit = hash_list.settings.max_age(hash_list.source_kind) or max_age
        age = now - hash_list.last_sync
        if age > limit:
            report.findings.append(
                Finding(
                    "list",
                    f"list {hash_list.name!r} was last synced {age / 3600:.1f} h ago, over "
                    f"{limit / 3600:.1f} h (the last sync failed, or none has run since); "
                    "run 'uploadscan sync'",
                    repairable=False,
                )
            )


def check_index(store: Store, index_dir: Path) -> list[Finding]:
    """Problems with the index files of ``store`` in ``index_dir`` (reads every file)."""
    return [Finding("index", problem) for problem in check_index_files(store, index_dir)]


def _repair_index(store: Store, index_dir: Path, findings: list[Finding]) -> None:
    """Delete the manifest and every index file it names (damaged or not, they are derived),
    then rebuild from the store under the matcher's build lock."""
    try:
        rebuild_index_files(store, index_dir)
    except UploadScanError as exc:
        findings.append(Finding("index", f"rebuilding the index failed: {exc}", repairable=False))


__all__ = ["DoctorReport", "Finding", "check_index", "diagnose"]
