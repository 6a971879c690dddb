"""Contenders of the detection benchmark that hold the listed images themselves and answer a
query with the entries it matches, rather than one hash compared by Hamming distance:

- our own list: a ``Scanner`` with a ``local:`` block list filled by ``Scanner.add_media``
  (MD5, SHA-256, PDQ and the local-feature type "sift"), queried with ``Scanner.scan``;
- perception's ``local_descriptor_deduplication`` (SIFT, ratio test, a fitted transform) at its
  defaults;
- imagehash's ``crop_resistant_hash`` (segment hashes) at its defaults.

The work is split so the slow parts run in the worker processes: ``listed_form`` (worker) turns a
listed image into what the contender keeps, ``add`` and ``finish`` (parent) build the list,
``query_form`` (worker, after the fork) turns a query into what it compares, and ``match``
(worker) answers a batch of queries at once (perception builds its search index per call, so a
photo's copies go as one batch). The workers are spawned, not forked, and get the matchers
pickled: the parent has run OpenCV and faiss thread pools while building the lists, and a forked
child that touches them again can hang. Nothing opened (SQLite, faiss) crosses into a worker: it
opens its own handles on first use.

A query answers ``Found``: the entries matched at the contender's operating point and, per
entry, the score the contender's verification measured (inliers, matching segments), including
pairs below the operating point when the contender reports them. That is how the benchmark
reads the false-match margin: the best score of a false pair against the threshold.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

os.environ.setdefault("TQDM_DISABLE", "1")  # perception's validation loop draws a progress bar

OWN_LIST = "own list (PDQ + sift)"
PERCEPTION_LDD = "perception local descriptors"
CROP_RESISTANT = "imagehash crop_resistant"
LOCAL_TYPE = "sift"


@dataclass
class Found:
    """What one query matched: entry keys at the operating point, and scores per entry."""

    matched: list[int] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"matched": self.matched, "scores": {str(k): v for k, v in self.scores.items()}}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Found:
        return cls(list(row["matched"]), {int(k): float(v) for k, v in row["scores"].items()})


class ListMatcher(Protocol):
    name: str
    #: what the scores count, and the operating point (a score >= threshold matches)
    score_name: str
    threshold: float
    #: which transforms it runs on: "all"; "goals" (the goal edits and one standard transform
    #: per family: it is too slow for all); "goals only" (the goal edits and the identity)
    scope: str
    #: the lowest score a pair is reported with (None: only pairs at the operating point)
    floor: float | None

    def listed_form(self, data: bytes, image: Image.Image) -> Any: ...

    def add(self, key: int, form: Any) -> None: ...

    def finish(self) -> None: ...

    def query_form(self, data: bytes, image: Image.Image) -> Any: ...

    def match(self, forms: list[Any]) -> list[Found]: ...


def available(workdir: Path) -> tuple[list[ListMatcher], dict[str, str]]:
    """The list matchers that can run here, and why the others cannot."""
    out: list[ListMatcher] = []
    missing: dict[str, str] = {}
    reason = own_list_unavailable()
    if reason is None:
        out.append(OwnListMatcher(workdir / "own-list-home"))
    else:
        missing[OWN_LIST] = reason
    try:
        out.append(PerceptionMatcher(workdir / "perception"))
    except ImportError as exc:
        missing[PERCEPTION_LDD] = str(exc)
    try:
        out.append(CropResistantMatcher())
    except ImportError as exc:
        missing[CROP_RESISTANT] = str(exc)
    return out, missing


# --- our own list --------------------------------------------------------------------------------


def own_list_unavailable() -> str | None:
    """Why the own-list contender cannot run (None: it can)."""
    from uploadscan import hashtypes

    if LOCAL_TYPE not in hashtypes.registry:
        known = ", ".join(hashtypes.names())
        return f'hash type "{LOCAL_TYPE}" is not registered (this build has: {known})'
    return None


def _entry_id(key: int) -> str:
    return f"e{key}"


def _entry_key(entry_id: str | None) -> int | None:
    if entry_id is None or not entry_id.startswith("e"):
        return None
    return int(entry_id[1:])


class OwnListMatcher:
    """``Scanner.add_media`` for every listed image, ``Scanner.scan`` for every query.

    Detection is the verdict of list ``ours`` (block or review). A second list, ``probe``, holds
    the same media with the local-feature threshold at the lowest value the list settings
    accept, so the verdict also shows verified pairs *below* the real threshold: their inlier
    counts give the false-match margin. Matches are read per list, so the probe list never
    changes what counts as detected.
    """

    name = OWN_LIST
    score_name = "inliers"
    scope = "all"
    LIST = "ours"
    PROBE = "probe"

    def __init__(self, home: Path) -> None:
        from uploadscan import hashtypes

        local = hashtypes.get(LOCAL_TYPE)
        self.setting = local.threshold_setting
        self.threshold = float(local.default_threshold)
        self.home = home
        self.probe_threshold: float | None = None
        self.floor: float | None = None
        self._scanner: Any = None
        self._pid = -1
        self._setup()
        self.finish()  # no connection may cross the fork into the workers

    def _open(self) -> Any:
        from uploadscan import Scanner

        if self._scanner is None or self._pid != os.getpid():
            self._scanner = Scanner.open(self.home, audit=False)
            self._pid = os.getpid()
        return self._scanner

    def _setup(self) -> None:
        from uploadscan import ConfigError

        scanner = self._open()
        scanner.add_list(self.LIST, kind="block", source="local:")
        if self.setting is None:
            return
        for value in (1, 2, 3, 4, 5, 6, 8, 10):  # the lowest value the list settings accept
            if value >= self.threshold:
                break
            try:
                scanner.add_list(
                    self.PROBE,
                    kind="review",
                    source="local:",
                    settings={self.setting: value},
                )
            except ConfigError:
                continue
            self.probe_threshold = self.floor = float(value)
            break

    def listed_form(self, data: bytes, image: Image.Image) -> bytes:
        return data  # the file itself: add_media computes what it needs

    def add(self, key: int, form: bytes) -> None:
        scanner = self._open()
        scanner.add_media(self.LIST, form, entry_id=_entry_id(key))
        if self.probe_threshold is not None:
            scanner.add_media(self.PROBE, form, entry_id=_entry_id(key))

    def finish(self) -> None:
        if self._scanner is not None:  # workers open their own after the fork
            self._scanner.close()
            self._scanner = None

    def match(self, forms: list[Found]) -> list[Found]:
        return forms  # the scan already matched

    def query_form(self, data: bytes, image: Image.Image) -> Found:
        from uploadscan import Action

        verdict = self._open().scan(data)
        found = Found()
        for match in verdict.matches:
            key = _entry_key(match.external_id)
            if key is None:
                continue
            evidence = match.evidence or {}
            inliers = evidence.get("inliers")
            if isinstance(inliers, int | float):
                found.scores[key] = max(found.scores.get(key, 0.0), float(inliers))
            detected = match.action in (Action.BLOCK, Action.REVIEW)
            if match.list_name == self.LIST and detected and key not in found.matched:
                found.matched.append(key)
        return found


# --- perception ----------------------------------------------------------------------------------


class PerceptionMatcher:
    """``local_descriptor_deduplication`` at its defaults (SIFT, 256 features at 256 px, ratio
    0.5, >= 5 inliers, 60% keypoint intersection) on the CPU, one query at a time.

    Its API takes files, so each image is written as PNG (lossless: the pixels the other
    contenders see) and described with ``generate_image_descriptors``; ``deduplicate_dfs``
    then searches and validates a batch of queries against the listed descriptors.
    """

    name = PERCEPTION_LDD
    score_name = "inliers"
    threshold = 1.0  # it answers matches only: a returned pair is a match
    scope = "all"
    floor = None

    def __init__(self, workdir: Path) -> None:
        import perception.local_descriptor_deduplication  # noqa: F401 - ImportError here

        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._listed: dict[int, dict[str, Any]] = {}
        self._reference: Any = None

    @property
    def _ldd(self) -> Any:
        import perception.local_descriptor_deduplication as ldd

        return ldd

    def _describe(self, image: Image.Image) -> dict[str, Any] | None:
        with tempfile.TemporaryDirectory(dir=self.workdir) as folder:
            path = Path(folder) / "image.png"
            image.save(path, "PNG", compress_level=1)
            described: dict[str, Any] | None = self._ldd.generate_image_descriptors(str(path))
        return described  # None: fewer than its minimum of 10 features, it declines

    def listed_form(self, data: bytes, image: Image.Image) -> dict[str, Any] | None:
        return self._describe(image)

    def query_form(self, data: bytes, image: Image.Image) -> dict[str, Any] | None:
        return self._describe(image)

    def add(self, key: int, form: dict[str, Any] | None) -> None:
        if form is not None:
            self._listed[key] = form

    def _frame(self, rows: dict[int, dict[str, Any]]) -> Any:
        import pandas as pd

        columns = ("descriptors", "keypoints", "descriptor_count", "dimensions", "hasher")
        frame = pd.DataFrame({c: [r[c] for r in rows.values()] for c in columns})
        return frame.set_index(pd.Index(list(rows)))

    def finish(self) -> None:
        self._reference = self._frame(self._listed)

    def match(self, forms: list[dict[str, Any] | None]) -> list[Found]:
        out = [Found() for _ in forms]
        queries = {i: f for i, f in enumerate(forms) if f is not None}
        if not queries or self._reference is None or not len(self._reference):
            return out
        pairs = self._ldd.deduplicate_dfs(
            self._reference, self._frame(queries), use_gpu=False, verbose=True, max_workers=1
        )
        for query, key, stats in pairs:
            found = out[int(query)]
            found.matched.append(int(key))
            found.scores[int(key)] = float(stats.get("inliers") or 0)
        return out


# --- imagehash -----------------------------------------------------------------------------------


U8 = npt.NDArray[np.uint8]


class CropResistantMatcher:
    """``crop_resistant_hash`` at its defaults (dhash of each segment of a 300 px
    segmentation); a query matches an entry when at least ``region_cutoff`` (default 1) of its
    segment hashes lie within 25% of the bits of one of the entry's (``ImageMultiHash.matches``).

    The score is that count of matching segments for every entry, computed here with numpy
    exactly as ``ImageMultiHash.hash_diff`` does (query segments against the entry's), so the
    report can also sweep the region cut-off. It takes about 1.5 s per image whatever the
    size (the segmentation is pure Python), so it runs on the goal transforms and the quick
    standard ones only.
    """

    name = CROP_RESISTANT
    score_name = "matching segments"
    threshold = 1.0
    scope = "goals"
    floor = 1.0
    BIT_ERROR_RATE = 0.25

    def __init__(self) -> None:
        import imagehash

        self._hash = imagehash.crop_resistant_hash
        self._segments: list[U8] = []  # per entry, (segments, bytes)
        self._keys: list[int] = []

    def _segments_of(self, image: Image.Image) -> U8:
        multi = self._hash(image)
        return np.array(
            [np.packbits(np.asarray(h.hash, dtype=bool).ravel()) for h in multi.segment_hashes],
            dtype=np.uint8,
        )

    def listed_form(self, data: bytes, image: Image.Image) -> U8:
        return self._segments_of(image)

    def query_form(self, data: bytes, image: Image.Image) -> U8:
        return self._segments_of(image)

    def add(self, key: int, form: U8) -> None:
        self._keys.append(key)
        self._segments.append(form)

    def finish(self) -> None:
        pass

    def match(self, forms: list[U8]) -> list[Found]:
        return [self._match_one(form) for form in forms]

    def _match_one(self, query: U8) -> Found:
        cutoff = query.shape[1] * 8 * self.BIT_ERROR_RATE if query.size else 0
        found = Found()
        for key, listed in zip(self._keys, self._segments, strict=True):
            if not len(query) or not len(listed):
                continue
            xor = query[:, None, :] ^ listed[None, :, :]
            nearest = np.bitwise_count(xor).sum(axis=2).min(axis=1)
            count = int((nearest <= cutoff).sum())
            if count:
                found.scores[key] = float(count)
                if count >= self.threshold:
                    found.matched.append(key)
        return found
