"""Lists built from the platform's own media: what goes on them, and what may leave.

Publishers' lists carry only hashes. A platform's own list is different: its moderators
confirmed the content and the platform still holds the file, so everything that can be
computed from it goes on the list — MD5 and SHA-256, PDQ, a video's PDQ frames and TMK, and the
hash types that only make sense with the media at hand (local features, which survive crops
and screenshots). The media itself is never stored.

One piece of media is one *entry id* (``--id``, default its SHA-256): all its values carry it
as their external id (a video's frames as ``id#frame``) and the same labels, so the whole entry
can be removed in one step. Own lists are never synced (source ``local:``) and never go stale.

Exporting an own list for sharing back gives hashes only, in the formats others read: the
python-threatexchange list file for image hashes and digests, a vPDQ file per video, a ``.tmk``
file per video. Values of types that reveal more about an image than a hash does (local
descriptors) stay local: a type says so with ``HashType.shareable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import ConfigError, InvalidHashError
from .hashing._hash_file import UploadHashes, computable
from .hashing._protocol import HashType
from .hashing._registry import registry
from .hashing._result import FrameHash
from .hashing._vpdq import MIN_QUALITY, write_vpdq
from .store._lists import EntryUpsert, HashList, SourceKind
from .store._store import Store
from .store._videos import VIDEO_KEY, video_upserts

__all__ = [
    "LOCAL_SOURCE",
    "ExportResult",
    "MediaEntry",
    "export_list",
    "media_upserts",
    "own_list",
    "own_list_types",
]

#: The source of a list whose entries are managed here rather than synced.
LOCAL_SOURCE = "local:"


@dataclass(frozen=True, slots=True)
class MediaEntry:
    """One piece of media put on an own list: its entry id, the values added by hash type,
    and what could not be listed (a near-blank picture's PDQ) and why."""

    list_name: str
    entry_id: str
    media_type: str
    counts: dict[str, int] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "list": self.list_name,
            "entry_id": self.entry_id,
            "media_type": self.media_type,
            "added": dict(self.counts),
            "skipped": list(self.skipped),
        }


def own_list_types() -> list[HashType]:
    """What ``add_media`` computes: every default type and every type meant for own lists."""
    return [t for t in registry if (t.computed_by_default or t.own_lists) and computable(t)]


def own_list(store: Store, name: str) -> HashList:
    """The list ``name``, refused unless its entries are managed here (``local:``, or no
    source): media added to a synced list would vanish at its next full sync."""
    hash_list = store.get_list(name)
    if hash_list.source_kind not in (SourceKind.LOCAL, SourceKind.NONE):
        raise ConfigError(
            f"list {name!r} is synced from {hash_list.source!r}; add media to a list of your "
            f"own (uploadscan lists add NAME --kind block --source {LOCAL_SOURCE})"
        )
    return hash_list


def media_upserts(
    hashed: UploadHashes, *, entry_id: str, labels: Sequence[str] = ()
) -> tuple[list[EntryUpsert], list[str]]:
    """The entries that list one piece of media, and the values left out with why."""
    if hashed.error is not None:
        raise hashed.error
    result = hashed.result
    tags = tuple(sorted({label.strip() for label in labels if label.strip()}))
    upserts: list[EntryUpsert] = []
    skipped: list[str] = []
    for name, value in result.values.items():
        quality = result.qualities.get(name)
        if quality is not None and quality < MIN_QUALITY:
            skipped.append(f"{name} of quality {quality} (< {MIN_QUALITY}): too flat to list")
            continue
        _add(upserts, skipped, EntryUpsert(name, value, tags, entry_id))
    if result.frames:
        for upsert in video_upserts(entry_id, result.frames, labels=("video", *tags)):
            _add(upserts, skipped, upsert)
    return upserts, skipped


def _add(upserts: list[EntryUpsert], skipped: list[str], upsert: EntryUpsert) -> None:
    hash_type = registry.get(upsert.hash_type)
    try:
        hash_type.check_listable(hash_type.validate(upsert.value))
    except InvalidHashError as exc:
        skipped.append(str(exc))
        return
    upserts.append(upsert)


def entry_keys(store: Store, list_name: str, entry_id: str) -> list[tuple[str, str]]:
    """(hash type, value) of every live entry of ``list_name`` that belongs to ``entry_id``."""
    return [
        (e.hash_type, e.value)
        for e in store.list_entries(list_name)
        if e.external_id == entry_id or (e.external_id or "").startswith(f"{entry_id}#")
    ]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Files written by ``export_list``, the values kept back because they stay local, and
    the files of an earlier export removed because their entries are gone."""

    files: tuple[Path, ...]
    kept_local: dict[str, int]
    removed: tuple[Path, ...] = ()


def export_list(store: Store, name: str, directory: Path) -> ExportResult:
    """Write list ``name`` as files others can read, hashes only (see the module docstring).

    ``directory/NAME.txt`` holds the image hashes and digests (``pdq <hex>`` lines, the
    python-threatexchange list format that ``uploadscan feed publish`` also takes); each video's
    frames go to ``directory/videos/ID.txt`` (vPDQ); a type whose values are files of their own
    (``HashType.file_suffix``: TMK's ``.tmk``) gets ``directory/<suffix>/ID<suffix>``.

    The export is a snapshot: each folder of per-entry files is a list source on its own
    (``lists add NAME --source DIR/tmk``), so files an earlier export wrote there for entries
    since removed are deleted, or a removed video would stay listed downstream.
    """
    hash_list = store.get_list(name)
    directory.mkdir(parents=True, exist_ok=True)
    lines: list[str] = [f"# uploadscan list {name} ({hash_list.kind.value}), hashes only"]
    videos: dict[str, list[tuple[float, FrameHash]]] = {}
    kept_local: dict[str, int] = {}
    files: list[Path] = []
    for entry in store.list_entries(name):
        hash_type = registry.get(entry.hash_type)
        if not hash_type.shareable:
            kept_local[entry.hash_type] = kept_local.get(entry.hash_type, 0) + 1
            continue
        extra = entry.extra or {}
        video = extra.get(VIDEO_KEY)
        if video is not None:
            quality = int(extra.get("quality", 100))
            for moment in extra.get("timestamps") or [extra.get("timestamp", 0.0)]:
                frame = FrameHash(float(moment), entry.value, quality)
                videos.setdefault(str(video), []).append((float(moment), frame))
            continue
        if hash_type.file_suffix is not None:
            folder = hash_type.file_suffix.lstrip(".")
            stem = _file_name(entry.external_id, entry.id)
            target = directory / folder / f"{stem}{hash_type.file_suffix}"
            if target in files:  # two ids that read the same once made safe for a file name
                target = target.with_name(f"{stem}-{entry.id}{hash_type.file_suffix}")
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(hash_type.to_bytes(entry.value))
            files.append(target)
            continue
        lines.append(f"{hash_type.name} {entry.value}")
    flat = directory / f"{name}.txt"
    flat.write_text("\n".join(lines) + "\n", encoding="utf-8")
    files.insert(0, flat)
    for video, moments in sorted(videos.items()):
        target = directory / "videos" / f"{_file_name(video, 0)}.txt"
        target.parent.mkdir(exist_ok=True)
        target.write_text(write_vpdq(f for _, f in sorted(moments, key=_first)), encoding="utf-8")
        files.append(target)
    return ExportResult(tuple(files), kept_local, _remove_stale(directory, files))


def _remove_stale(directory: Path, written: list[Path]) -> tuple[Path, ...]:
    """Per-entry files of an earlier export (``videos/*.txt``, ``<suffix>/*<suffix>``) that
    this one did not write again."""
    patterns = {"videos": ".txt"}
    for hash_type in registry:
        if hash_type.file_suffix is not None:
            patterns[hash_type.file_suffix.lstrip(".")] = hash_type.file_suffix
    keep = set(written)
    removed = []
    for folder, suffix in sorted(patterns.items()):
        path = directory / folder
        if not path.is_dir():
            continue
        for stale in sorted(path.iterdir()):
            if stale.is_file() and stale.name.endswith(suffix) and stale not in keep:
                stale.unlink()
                removed.append(stale)
    return tuple(removed)


def _first(item: tuple[float, FrameHash]) -> float:
    return item[0]


def _file_name(external_id: str | None, fallback: int) -> str:
    text = external_id or f"entry-{fallback}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return safe.strip(".")[:120] or f"entry-{fallback}"
