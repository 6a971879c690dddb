"""From query hashes to policy-checked matches, shared by ``scan`` and ``lookup``.

Every hash of one upload — the image's PDQ and its dihedral variants, every video frame, the
digests — goes to the matcher in one batch per hash type, searched at the widest threshold of
any list; each hit is then checked against its own list's threshold, quality floor and label
filter. Entries that belong to a listed video are grouped and judged by the time-coverage rule
(``_vpdq``), so a video matches as a whole, not frame by frame.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import hashtypes
from ._errors import InvalidHashError
from ._policy import labels_pass, match_action
from ._verdict import Match
from .hashing._result import FrameHash
from .hashing._vpdq import video_match
from .index._files import Matcher, MatcherView
from .store._lists import Entry, HashList
from .store._store import Store

#: Frames of listed videos are stored as PDQ entries whose ``extra`` names the video.
VIDEO_KEY = "video"
#: Reads retried when a commit lands between reading the index version and the lists.
_CONSISTENCY_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class QueryHash:
    """One hash to look up. ``variant`` 0 is the hash as computed, 1-7 its dihedral forms;
    ``frame`` is the index of the video frame it came from (``None`` for a still image)."""

    hash_type: str
    value: str
    variant: int = 0
    quality: int | None = None
    frame: int | None = None
    timestamp: float | None = None

    @classmethod
    def from_mapping(cls, hashes: Mapping[str, str | Sequence[str]]) -> list[QueryHash]:
        """Validate ``{"pdq": "...", "md5": ["...", ...]}`` into queries."""
        if not isinstance(hashes, Mapping):
            raise InvalidHashError("hashes must be a mapping from hash-type name to values")
        out: list[QueryHash] = []
        for name, values in hashes.items():
            hash_type = hashtypes.get(name)
            items = [values] if isinstance(values, str) else list(values)
            # Several PDQ values are taken as the sampled frames of one video, a second apart,
            # so listed videos can be matched from precomputed hashes too.
            as_frames = hash_type.name == "pdq" and len(items) > 1
            for index, value in enumerate(items):
                canonical = hash_type.validate(value)
                if as_frames:
                    out.append(cls("pdq", canonical, frame=index, timestamp=float(index)))
                else:
                    out.append(cls(hash_type.name, canonical))
        return out


class Lookup:
    """Matches queries against the store's lists, through the matcher's indexes."""

    def __init__(self, store: Store, matcher: Matcher) -> None:
        self._store = store
        self._matcher = matcher
        self._lists_version = -1
        self._lists: dict[str, HashList] = {}
        self._needed: frozenset[str] = frozenset()

    def _reload_lists(self) -> None:
        version = self._store.version()
        if version > self._matcher.version:
            # A write committed (here or in another process): serve it now rather than after
            # the matcher's own polling interval. Cheap: a delta read, never an index build.
            self._matcher.refresh(build=False)
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
        queries: Sequence[QueryHash],
        *,
        upload_frames: Sequence[FrameHash] = (),
        match_images_in_video: bool = True,
    ) -> tuple[list[Match], dict[str, HashList]]:
        """Match at one store version, and return the lists as they were at that version.

        A sync in another process may commit at any moment; a verdict that names list version
        N must have been answered from version N, so the index view, the lists and the entries
        are read at one version, retrying when a commit lands in between.
        """
        for _ in range(_CONSISTENCY_ATTEMPTS):
            version = self._store.version()
            if version > self._matcher.version:
                self._matcher.refresh(build=False)
            view = self._matcher.view()
            lists = self.lists()
            if view.version == version == self._lists_version == self._store.version():
                break
        matches = self._match(
            queries,
            lists,
            view,
            upload_frames=upload_frames,
            match_images_in_video=match_images_in_video,
        )
        return matches, lists

    def match(
        self,
        queries: Sequence[QueryHash],
        lists: Mapping[str, HashList],
        *,
        upload_frames: Sequence[FrameHash] = (),
        match_images_in_video: bool = True,
    ) -> list[Match]:
        """Match against ``lists`` through the indexes served now (see ``match_consistent``)."""
        return self._match(
            queries,
            lists,
            self._matcher.view(),
            upload_frames=upload_frames,
            match_images_in_video=match_images_in_video,
        )

    def _match(
        self,
        queries: Sequence[QueryHash],
        lists: Mapping[str, HashList],
        view: MatcherView,
        *,
        upload_frames: Sequence[FrameHash],
        match_images_in_video: bool,
    ) -> list[Match]:
        hits = self._search(queries, lists, view)
        if not hits:
            return []
        entries = self._store.entries(
            {entry_id for entry_id, _, _ in hits}, at_version=view.version
        )
        image_best: dict[int, tuple[int, QueryHash, Entry]] = {}
        image_frames: dict[int, set[float]] = defaultdict(set)
        video_hits: dict[tuple[str, str], list[tuple[Entry, QueryHash, int]]] = defaultdict(list)
        for entry_id, query, distance in hits:
            entry = entries.get(entry_id)
            if entry is None or entry.list_name not in lists:
                continue  # removed since the index was built
            hash_list = lists[entry.list_name]
            if not _within_policy(hash_list, entry, query, distance):
                continue
            video = (entry.extra or {}).get(VIDEO_KEY)
            if video is not None:
                video_hits[(entry.list_name, str(video))].append((entry, query, distance))
                continue
            if query.frame is not None:
                if not match_images_in_video:
                    continue
                if query.timestamp is not None:
                    image_frames[entry_id].add(query.timestamp)
            best = image_best.get(entry_id)
            if best is None or distance < best[0]:
                image_best[entry_id] = (distance, query, entry)
        matches = [
            _make_match(lists[entry.list_name], entry, query, distance, image_frames[entry.id])
            for distance, query, entry in image_best.values()
        ]
        for (list_name, video), found in video_hits.items():
            match = self._video_match(lists[list_name], video, found, upload_frames)
            if match is not None:
                matches.append(match)
        matches.sort(key=lambda m: (-m.action.severity, m.distance, m.list_name, m.entry_id))
        return matches

    def _search(
        self, queries: Sequence[QueryHash], lists: Mapping[str, HashList], view: MatcherView
    ) -> list[tuple[int, QueryHash, int]]:
        by_type: dict[str, list[QueryHash]] = defaultdict(list)
        for query in queries:
            by_type[query.hash_type].append(query)
        out: list[tuple[int, QueryHash, int]] = []
        for type_name, group in by_type.items():
            if type_name not in self._needed:
                continue
            hash_type = hashtypes.get(type_name)
            radius = _search_radius(type_name, lists)
            codes = np.frombuffer(
                b"".join(bytes.fromhex(q.value) for q in group), dtype=np.uint8
            ).reshape(len(group), hash_type.bits // 8)
            found = view.search(type_name, codes, radius)
            for qi, entry_id, distance in zip(
                found.query.tolist(), found.ids.tolist(), found.distance.tolist(), strict=True
            ):
                out.append((int(entry_id), group[qi], int(distance)))
        return out

    def _video_match(
        self,
        hash_list: HashList,
        video: str,
        found: list[tuple[Entry, QueryHash, int]],
        upload_frames: Sequence[FrameHash],
    ) -> Match | None:
        listed, positions = listed_timeline(self._store.video_frames(hash_list.name, video))
        if not listed:
            return None
        pairs = [
            (i, q.frame)
            for entry, q, _ in found
            if q.frame is not None
            for i in positions.get(entry.id, ())
        ]
        upload = list(upload_frames)
        if not upload:
            # Precomputed hashes without timestamps: each value stands for one second.
            count = 1 + max((q.frame for _, q, _ in found if q.frame is not None), default=0)
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
        entry, query, distance = min(found, key=lambda item: item[2])
        timestamps = {q.timestamp for _, q, _ in found if q.timestamp is not None}
        return _make_match(
            hash_list,
            entry,
            query,
            distance,
            timestamps,
            coverage=result.listed_coverage,
            video=video,
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


def _search_radius(type_name: str, lists: Mapping[str, HashList]) -> int:
    hash_type = hashtypes.get(type_name)
    if hash_type.is_exact:
        return 0
    if type_name == "pdq":
        return max((hl.settings.pdq_threshold for hl in lists.values()), default=31)
    return hash_type.default_threshold


def _within_policy(hash_list: HashList, entry: Entry, query: QueryHash, distance: int) -> bool:
    if entry.hash_type == "pdq":
        if distance > hash_list.settings.pdq_threshold:
            return False
        if query.quality is not None and query.quality < hash_list.settings.min_quality:
            return False
    elif distance > hashtypes.get(entry.hash_type).default_threshold:
        return False
    return labels_pass(hash_list, entry.labels)


def _make_match(
    hash_list: HashList,
    entry: Entry,
    query: QueryHash,
    distance: int,
    timestamps: set[float],
    *,
    coverage: float | None = None,
    video: str | None = None,
) -> Match:
    return Match(
        list_name=hash_list.name,
        list_kind=hash_list.kind.value,
        list_version=hash_list.version,
        entry_id=entry.id,
        hash_type=entry.hash_type,
        value=entry.value,
        distance=distance,
        action=match_action(hash_list, entry.hash_type, distance),
        labels=entry.labels,
        external_id=entry.external_id,
        query=query.value,
        timestamps=tuple(sorted(timestamps)),
        coverage=coverage,
        video=video,
    )
