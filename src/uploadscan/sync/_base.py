"""What every hash-list source is: something that turns a checkpoint into batches of changes.

Modelled on python-threatexchange's ``SignalExchangeAPI.fetch_iter()``, which yields
``FetchDelta(updates, checkpoint)``: a source never writes to the store itself. It yields
``FetchBatch`` values, and the runner applies each one in a single store transaction together
with the batch's checkpoint. That split is what makes sync resumable (the stored checkpoint
always describes exactly what was applied) and keeps every source testable on its own.

A source whose checkpoint is too old to continue from (ThreatExchange drops tombstones after
90 days) raises ``StaleCheckpointError``; the runner then refetches everything and removes what the
fresh copy no longer has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .. import hashtypes
from .._errors import UnknownHashTypeError
from ..store._lists import EntryUpsert

__all__ = [
    "FetchBatch",
    "Source",
    "map_signal_type",
]


@dataclass
class FetchBatch:
    """One unit of change, applied by the runner in one store transaction.

    ``upserts`` and ``deletes`` may be one-shot iterators that stream from a file: a
    million-line list is never held in memory as objects. Parsing errors raised while they
    are consumed abort the batch before the store is written. ``checkpoint`` is the source's
    position once this batch is applied (``None``: leave the stored one unchanged).
    ``replace`` makes the batch a full snapshot: list entries not among ``upserts`` go.
    ``skipped`` counts entries the source left out and why; streaming sources fill it while
    ``upserts`` is consumed.

    Progress (for people watching a long sync, never for correctness): ``pending`` is how
    many records the source still has to deliver, this batch's included, when it knows
    (a feed's manifest, TCAP's ``count``, a list file's line count). The runner counts the
    records as the store consumes them, unless ``counts_reads`` says the source's own
    producers report them through ``note_read`` (a list file counts lines, which its packed
    upserts cannot show one by one).
    """

    upserts: Iterable[EntryUpsert] = ()
    deletes: Iterable[tuple[str, str]] = ()
    checkpoint: str | None = None
    replace: bool = False
    skipped: Counter[str] = field(default_factory=Counter)
    pending: int | None = None
    counts_reads: bool = False
    listener: Callable[[int], None] | None = field(default=None, repr=False, compare=False)

    def note_read(self, records: int) -> None:
        """Report ``records`` more records read; the runner's listener may raise
        ``SyncTimeoutError`` here, which aborts the batch before anything is applied."""
        if self.listener is not None and records > 0:
            self.listener(records)


@runtime_checkable
class Source(Protocol):
    """A hash-list publisher. ``description`` is safe to log (it never holds a secret)."""

    @property
    def description(self) -> str: ...

    def fetch(self, checkpoint: str | None) -> Iterator[FetchBatch]:
        """Batches that bring a list at ``checkpoint`` (``None``: empty or unknown) up to date.

        Raises ``StaleCheckpointError`` (before yielding anything) when it cannot resume.
        """
        ...


# python-threatexchange signal-type names (SignalType.get_name()) and the hash type each one
# is stored as here. The video variants are file digests like any other; a "video" label
# keeps the distinction visible in matches and reports.
_SIGNAL_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "pdq": ("pdq", ()),
    "md5": ("md5", ()),
    "photo_md5": ("md5", ()),
    "video_md5": ("md5", ("video",)),
    "sha256": ("sha256", ()),
    "photo_sha256": ("sha256", ()),
    "video_sha256": ("sha256", ("video",)),
    "tmk_pdqf": ("tmk", ()),
}
# Types python-threatexchange knows that describe things uploadscan does not hash: their
# entries are skipped (and counted) rather than failing the whole list.
_FOREIGN_SIGNAL_TYPES = frozenset(
    {"url", "url_md5", "raw_text", "trend_query", "vpdq", "text", "sha512"}
)


def map_signal_type(name: str) -> tuple[str, tuple[str, ...]] | None:
    """Our hash type and extra labels for a signal-type name; ``None`` for a known type we do
    not hash. ``UnknownHashTypeError`` for a name nobody knows."""
    key = name.strip().lower()
    if key in _SIGNAL_TYPES:
        return _SIGNAL_TYPES[key]
    if key in hashtypes.registry:
        return key, ()
    if key in _FOREIGN_SIGNAL_TYPES:
        return None
    raise UnknownHashTypeError(
        f"unknown signal type {name.strip()[:40]!r}; known: "
        f"{', '.join(sorted({*_SIGNAL_TYPES, *hashtypes.names()}))}"
    )


def bounded_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """Labels as a sorted tuple of distinct, non-empty, stripped strings."""
    return tuple(sorted({x.strip() for x in labels if isinstance(x, str) and x.strip()}))
