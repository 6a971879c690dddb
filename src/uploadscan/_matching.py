"""From queries to policy-checked matches, shared by ``scan``, ``lookup`` and retro.

Every query of one upload — the image's hashes and their extra forms, every video frame, the
digests — goes to the index files in one batch per hash type, searched at the widest
threshold any list sets for that type; each hit is then checked against its own list's
threshold, quality floor and label filter. Entries that belong to a listed video are grouped
and judged by the time-coverage rule (``_video_rule``), so a video matches as a whole, not
frame by frame. Nothing here knows a hash type by name: thresholds, quality and review bands
come from each type's declaration (``hashing._protocol.HashType``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._errors import InvalidHashError
from ._policy import labels_pass, match_action
from ._verdict import Match
from ._video_rule import video_match
from .hashing._protocol import Closeness, HashType, IndexKind
from .hashing._registry import registry
from .hashing._result import FrameHash, Query
from .index._files import IndexFiles, IndexView
from .store._lists import Entry, HashList
from .store._store import Store
from .store._videos import VIDEO_KEY

#: Reads retried when a commit lands between reading the index version and the lists.
_CONSISTENCY_ATTEMPTS = 5


def queries_from_mapping(hashes: Mapping[str, str | Sequence[str]]) -> list[Query]:
    """Validate ``{"pdq": "...", "md5": ["...", ...]}`` into queries.

    Several values of a per-frame type (PDQ) are taken as the sampled frames of one video, a
    second apart, so listed videos can be matched from precomputed hashes too.
    """
    if not isinstance(hashes, Mapping):
        raise InvalidHashError("hashes must be a mapping from hash-type name to values")
    out: list[Query] = []
    for name, values in hashes.items():
        hash_type = registry.get(name)
        items = [values] if isinstance(values, str) else list(values)
        as_frames = hash_type.per_frame and len(items) > 1
        for index, value in enumerate(items):
            canonical = hash_type.validate(value)
            if as_frames:
                out.append(Query(hash_type.name, canonical, frame=index, timestamp=float(index)))
            else:
                out.append(Query(hash_type.name, canonical))
    return out


@dataclass(frozen=True, slots=True)
class _Hit:
    entry_id: int
    query: Query
    measure: float
    evidence: Mapping[str, float | int | str] | None = None


class Matcher:
    """Matches queries against the store's lists, through the index files."""

    def __init__(self, store: Store, index: IndexFiles) -> None:
        self._store = store
        self._index = index
        self._lists_version = -1
        self._lists: dict[str, HashList] = {}
        self._needed: frozenset[str] = frozenset()

    def _reload_lists(self) -> None:
        version = self._store.version()
        if version > self._index.version:
            # A write committed (here or in another process): serve it now rather than after
            # the index files' own polling interval. Cheap: a delta read, never a build.
            self._index.refresh(build=False)
        if version != self._lists_version:
            lists = {hl.name: hl for hl in self._store.lists()}
            needed = {t for hl in lists.values() for t, n in hl.counts_by_type.items() if n > 0}
            self._lists, self._needed = lists, frozenset(needed)
            self._lists_version = version

    def lists(self) -> dict[str, HashList]:
        self._reload_lists()
        return self._lists

    def needed_types(self) -> frozenset[str]:
        """Hash types some list holds: computing anything else is wasted work."""
        self._reload_lists()
        return self._needed

    def match_consistent(
        self,
        queries: Sequence[Query],
        *,
        upload_frames: Sequence[FrameHash] = (),
        match_images_in_video: bool = True,
        only_lists: frozenset[str] | None = None,
    ) -> tuple[list[Match], dict[str, HashList]]:
        """Match at one store version, and return the lists as they were at that version.

        A sync in another process may commit at any moment; a verdict that names list version
        N must have been answered from version N, so the index view, the lists and the entries
        are read at one version, retrying when a commit lands in between. ``only_lists``
        restricts matching (and the returned lists) to those names.
        """
        for _ in range(_CONSISTENCY_ATTEMPTS):
            version = self._store.version()
            if version > self._index.version:
                self._index.refresh(build=False)
            view = self._index.view()
            lists = self.lists()
            if view.version == version == self._lists_version == self._store.version():
                break
        if only_lists is not None:
            lists = {name: hl for name, hl in lists.items() if name in only_lists}
        matches = self._match(
            queries,
            lists,
            view,
            upload_frames=upload_frames,
            match_images_in_video=match_images_in_video,
        )
        return matches, lists

    def _match(
        self,
        queries: Sequence[Query],
        lists: Mapping[str, HashList],
        view: IndexView,
        *,
        upload_frames: Sequence[FrameHash],
        match_images_in_video: bool,
    ) -> list[Match]:
        hits = self._search(queries, lists, view)
        if not hits:
            return []
        entries = self._store.entries({h.entry_id for h in hits}, at_version=view.version)
        image_best: dict[int, tuple[_Hit, Entry]] = {}
        image_frames: dict[int, set[float]] = defaultdict(set)
        video_hits: dict[tuple[str, str], list[tuple[Entry, _Hit]]] = defaultdict(list)
        for hit in hits:
            entry = entries.get(hit.entry_id)
            if entry is None or entry.list_name not in lists:
                continue  # removed since the index was built, or a list not consulted
            hash_list = lists[entry.list_name]
            hash_type = registry.get(entry.hash_type)
            if not _within_policy(hash_list, hash_type, entry, hit):
                continue
            video = (entry.extra or {}).get(VIDEO_KEY)
            if video is not None:
                video_hits[(entry.list_name, str(video))].append((entry, hit))
                continue
            query = hit.query
            if query.frame is not None:
                if not match_images_in_video:
                    continue
                if query.timestamp is not None:
                    image_frames[entry.id].add(query.timestamp)
            best = image_best.get(entry.id)
            if best is None or _closer(hash_type, hit.measure, best[0].measure):
                image_best[entry.id] = (hit, entry)
        matches = [
            _make_match(lists[entry.list_name], entry, hit, image_frames[entry.id])
            for hit, entry in image_best.values()
        ]
        for (list_name, video), found in video_hits.items():
            match = self._video_match(lists[list_name], video, found, upload_frames)
            if match is not None:
                matches.append(match)
        matches.sort(key=_match_order)
        return matches

    def _search(
        self, queries: Sequence[Query], lists: Mapping[str, HashList], view: IndexView
    ) -> list[_Hit]:
        by_type: dict[str, list[Query]] = defaultdict(list)
        for query in queries:
            by_type[query.hash_type].append(query)
        out: list[_Hit] = []
        for type_name, group in by_type.items():
            if type_name not in self._needed:
                continue
            hash_type = registry.get(type_name)
            if hash_type.index_kind is IndexKind.VECTOR:
                confirmed = view.search_values(
                    type_name, [q.value for q in group], shortlist(hash_type, lists)
                )
                out += [_Hit(h.entry_id, group[h.query], h.measure, h.evidence) for h in confirmed]
                continue
            radius = search_radius(hash_type, lists)
            codes = np.frombuffer(
                b"".join(hash_type.to_bytes(q.value) for q in group), dtype=np.uint8
            ).reshape(len(group), hash_type.code_bytes)
            found = view.search(type_name, codes, int(radius))
            for qi, entry_id, distance in zip(
                found.query.tolist(), found.ids.tolist(), found.distance.tolist(), strict=True
            ):
                out.append(_Hit(int(entry_id), group[qi], int(distance)))
        return out

    def _video_match(
        self,
        hash_list: HashList,
        video: str,
        found: list[tuple[Entry, _Hit]],
        upload_frames: Sequence[FrameHash],
    ) -> Match | None:
        listed, positions = listed_timeline(self._store.video_frames(hash_list.name, video))
        if not listed:
            return None
        pairs = [
            (i, hit.query.frame)
            for entry, hit in found
            if hit.query.frame is not None
            for i in positions.get(entry.id, ())
        ]
        upload = list(upload_frames)
        if not upload:
            # Precomputed hashes without timestamps: each value stands for one second.
            count = 1 + max(
                (h.query.frame for _, h in found if h.query.frame is not None), default=0
            )
            upload = [FrameHash(float(i), "", 100) for i in range(count)]
        result = video_match(
            listed,
            upload,
            pairs,
            coverage=hash_list.settings.video_coverage,
            upload_fraction=hash_list.settings.video_upload_fraction,
        )
        if not result.is_match:
            return None
        hash_type = registry.get(found[0][0].hash_type)
        entry, hit = min(found, key=lambda item: _rank(hash_type, item[1].measure))
        timestamps = {h.query.timestamp for _, h in found if h.query.timestamp is not None}
        return _make_match(
            hash_list, entry, hit, timestamps, coverage=result.listed_coverage, video=video
        )


def listed_timeline(entries: Sequence[Entry]) -> tuple[list[FrameHash], dict[int, list[int]]]:
    """The listed video's frames in time order, and which of them each entry stands for.

    An entry is one distinct frame hash; ``extra["timestamps"]`` holds every moment it occurs
    (a still scene repeats its hash), ``extra["timestamp"]`` the first.
    """
    moments: list[tuple[float, int, FrameHash]] = []
    for entry in entries:
        extra = entry.extra or {}
        quality = int(extra.get("quality", 100))
        times = extra.get("timestamps") or [extra.get("timestamp", 0.0)]
        for t in times:
            moments.append((float(t), entry.id, FrameHash(float(t), entry.value, quality)))
    moments.sort(key=lambda item: (item[0], item[1]))
    positions: dict[int, list[int]] = defaultdict(list)
    for index, (_, entry_id, _) in enumerate(moments):
        positions[entry_id].append(index)
    return [frame for _, _, frame in moments], positions


def search_radius(hash_type: HashType, lists: Mapping[str, HashList]) -> float:
    """The widest threshold any of ``lists`` sets for ``hash_type`` (0 for exact types)."""
    if hash_type.is_exact:
        return 0
    thresholds = [hl.settings.threshold(hash_type) for hl in lists.values()]
    if not thresholds:
        return float(hash_type.default_threshold)
    if hash_type.closeness is Closeness.SCORE:
        return min(thresholds)
    return max(thresholds)


def shortlist(hash_type: HashType, lists: Mapping[str, HashList]) -> float:
    """The widest shortlist bound any of ``lists`` sets for a vector type."""
    setting = hash_type.shortlist_setting
    default = float(hash_type.default_shortlist)
    if setting is None:
        return default
    values = [hl.settings.get(setting) for hl in lists.values()]
    bounds = [default if v is None else v for v in values] or [default]
    return min(bounds) if hash_type.closeness is Closeness.SCORE else max(bounds)


def _rank(hash_type: HashType, measure: float) -> float:
    """Sort key: smaller is closer, whichever way the type's measure runs."""
    return -measure if hash_type.closeness is Closeness.SCORE else measure


def _closer(hash_type: HashType, a: float, b: float) -> bool:
    return _rank(hash_type, a) < _rank(hash_type, b)


def _match_order(match: Match) -> tuple[int, float, str, int]:
    hash_type = registry.get(match.hash_type)
    return (
        -match.action.severity,
        _rank(hash_type, match.distance),
        match.list_name,
        match.entry_id,
    )


def _within_policy(hash_list: HashList, hash_type: HashType, entry: Entry, hit: _Hit) -> bool:
    if not hash_type.accepts(hit.measure, hit.evidence, hash_list.settings.get):
        return False
    quality = hit.query.quality
    if hash_type.has_quality and quality is not None and quality < hash_list.settings.min_quality:
        return False
    return labels_pass(hash_list, entry.labels)


def _make_match(
    hash_list: HashList,
    entry: Entry,
    hit: _Hit,
    timestamps: set[float],
    *,
    coverage: float | None = None,
    video: str | None = None,
) -> Match:
    hash_type = registry.get(entry.hash_type)
    measure = hit.measure
    return Match(
        list_name=hash_list.name,
        list_kind=hash_list.kind,
        list_version=hash_list.version,
        entry_id=entry.id,
        hash_type=entry.hash_type,
        value=hash_type.short_form(entry.value),
        distance=int(measure) if float(measure).is_integer() else measure,
        action=match_action(hash_list, hash_type, measure),
        labels=entry.labels,
        external_id=entry.external_id,
        query=hash_type.short_form(hit.query.value),
        timestamps=tuple(sorted(timestamps)),
        coverage=coverage,
        video=video,
        evidence=hit.evidence,
    )
