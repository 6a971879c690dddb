"""Detection quality: recall under image transforms and false matches, against the peers.

    python benchmarks/bench_detection.py              # 69 photos x 90 transforms, about an hour
    python benchmarks/bench_detection.py --goals --photos 12 --hard-photos 8 --tag own-lists
                                                      # the goal edits, ~40 min on 2 busy cores
    python benchmarks/bench_detection.py --quick      # 4 photos, one strength per family, ~1 min
    python benchmarks/bench_detection.py --images DIR # add your own photos to the originals

The originals are the distinct natural photos of the shared test data (plus ``--images``),
EXIF-transposed, converted to RGB and capped at 1600 px on the long side. A hash list holds each
original's hash; every transformed copy (``_transforms.py``) is hashed the way each contender
hashes an upload and compared with the list:

- uploadscan: what ``Scanner.scan`` does (``hash_upload``: our PDQ plus its dihedral variants,
  hashes of quality < 50 not matched) against the reference PDQ of the original (``pdqhash`` on
  the full decode), since lists are hashed by their publishers' tools, not by us;
- python-threatexchange's ``PdqSignal`` (plain PDQ), perception's PDQ and PHash, imagehash's
  phash and dhash, each against its own hash of the original.

A genuine pair (copy of A vs A) at distance <= threshold is a detection; an impostor pair (copy of
A vs original B != A, or original vs original) at distance <= threshold is a false match. 64-bit
hashes are shown at a conventional threshold (10 of 64 bits) and at the largest threshold whose
false-match rate does not exceed uploadscan's at 31 ("equal FMR").

Crop-robust matching of a platform's own list is judged in the same run (``_list_matchers.py``):

- "own list (PDQ + sift)": a ``Scanner`` with a ``local:`` block list, every original put on it
  with ``Scanner.add_media``, every copy checked with ``Scanner.scan`` (detected: a block or
  review match of the copy's own entry). It needs the "sift" hash type and is skipped, with the
  reason printed, where that type is not registered;
- perception's ``local_descriptor_deduplication`` and imagehash's ``crop_resistant_hash`` at
  their defaults (the latter also at the lowest cut-off with no false match; it takes seconds
  per image, so it runs on the goal edits and the quick standard transforms, and not at all
  with ``--quick``).

Hard negatives (``_transforms.OVERLAYS``): the same logo, caption band or screenshot chrome on
``--hard-photos`` listed photos and on as many other, unlisted ones; every match between them is a
false match, counted apart from the ordinary distractors (copies of A against B's entries). The
false-match margin is the list threshold over the best false pair's inliers. Tables go to
stdout and to benchmarks/results/detection*.md, plots to benchmarks/results/detection_*.png.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import pickle
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One thread per worker process (the workers are the parallelism), set before numpy, OpenCV
# and faiss start their pools; an explicit setting in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    find_data_dir,
    machine_info,
    print_machine_info,
    print_table,
    summarize_ms,
)
from _list_matchers import Found, ListMatcher
from _list_matchers import available as list_matchers
from _transforms import GOALS, GROUPS, OVERLAYS, Overlay, Transform, select

U8 = npt.NDArray[np.uint8]
HashFn = Callable[[bytes, Image.Image], tuple[list[bytes], int | None]]

OURS = "uploadscan"
PDQ_THRESHOLD = 31
MIN_QUALITY = 50
CONVENTIONAL_64 = 10
RESULTS = Path(os.environ.get("UPLOADSCAN_BENCH_RESULTS", Path(__file__).parent / "results"))
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif"}


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    bits: int
    threshold: int  # the default, or the conventional one for 64-bit hashes
    gate: bool = False  # True: queries with PDQ quality < 50 never match (as Scanner.scan)
    analysis: bool = False  # a prototype shown in the analysis, not a contender


# --- hashing (runs in worker processes) ----------------------------------------------------------


def _hash_functions() -> tuple[dict[str, tuple[Contender, HashFn]], dict[str, str]]:
    """Every contender that imports, and why the others are missing."""
    from uploadscan.hashing._hash_file import hash_upload, types_for

    types = types_for([])

    def ours(data: bytes, image: Image.Image) -> tuple[list[bytes], int | None]:
        scan = hash_upload(data, types=types)
        values = [q.value for q in scan.queries if q.hash_type == "pdq" and q.frame is None]
        return [bytes.fromhex(v) for v in values], scan.result.pdq_quality

    out: dict[str, tuple[Contender, HashFn]] = {
        OURS: (Contender(OURS, 256, PDQ_THRESHOLD, gate=True), ours),
    }
    missing: dict[str, str] = {}
    try:
        from threatexchange.signal_type.pdq.signal import PdqSignal

        def tx(data: bytes, image: Image.Image) -> tuple[list[bytes], int | None]:
            value = PdqSignal.hash_from_bytes(data)  # "" when it declines (low quality)
            return ([bytes.fromhex(value)] if value else []), None

        out["PDQ (python-threatexchange)"] = (Contender("PDQ (python-threatexchange)", 256, 31), tx)
    except ImportError as exc:
        missing["PDQ (python-threatexchange)"] = str(exc)
    try:
        from perception.hashers import PDQHash, PHash

        p_pdq, p_phash = PDQHash(), PHash()

        def perception_hash(hasher: object) -> HashFn:
            def fn(data: bytes, image: Image.Image) -> tuple[list[bytes], int | None]:
                vector = hasher.compute(np.asarray(image), hash_format="vector")  # type: ignore[attr-defined]
                return [np.packbits(np.asarray(vector, dtype=bool)).tobytes()], None

            return fn

        out["perception PDQ"] = (Contender("perception PDQ", 256, 31), perception_hash(p_pdq))
        out["perception PHash"] = (
            Contender("perception PHash", 64, CONVENTIONAL_64),
            perception_hash(p_phash),
        )
    except ImportError as exc:
        missing["perception"] = str(exc)
    try:
        import imagehash

        def ih(function: Callable[[Image.Image], object]) -> HashFn:
            return lambda data, image: ([bytes.fromhex(str(function(image)))], None)

        out["imagehash phash"] = (
            Contender("imagehash phash", 64, CONVENTIONAL_64),
            ih(imagehash.phash),
        )
        out["imagehash dhash"] = (
            Contender("imagehash dhash", 64, CONVENTIONAL_64),
            ih(imagehash.dhash),
        )
    except ImportError as exc:
        missing["imagehash"] = str(exc)
    return out, missing


def reference_pdq(image: Image.Image) -> bytes:
    """What a list publisher stores: pdqhash (the C++ reference) on the full RGB decode."""
    import pdqhash

    vector, _ = pdqhash.compute(np.ascontiguousarray(np.asarray(image)))
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes()


def load_original(path: Path, max_side: int) -> Image.Image:
    with Image.open(path) as raw:
        image = ImageOps.exif_transpose(raw).convert("RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


_WORKER: dict[str, tuple[Contender, HashFn]] = {}
#: the list matchers, built in the parent before the workers fork
_MATCHERS: list[ListMatcher] = []
#: keys of hard-negative entries start here; below it a key is the photo's index
HARD_BASE = 1_000_000
#: photo ids of the hard negatives' photos start here; below it an id is an original's index
HARD_PHOTO = 100_000


_LOADED = [""]  # the matchers file this worker process holds


def _load_matchers(state: str) -> None:
    """A worker's copy of the list matchers as the parent last saved them (``save_matchers``):
    the workers are spawned once and see the lists grow from empty to built."""
    if not _LOADED[0]:
        _one_thread()
    if state and _LOADED[0] != state:
        with open(state, "rb") as file:
            _MATCHERS[:] = pickle.load(file)
        _LOADED[0] = state


def save_matchers(workdir: Path, stage: str) -> str:
    path = workdir / f"matchers-{stage}.pickle"
    with open(path, "wb") as file:
        pickle.dump(_MATCHERS, file)
    return str(path)


def _one_thread() -> None:
    """OpenCV's own thread pool (not governed by OMP_NUM_THREADS) at one thread per worker."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _hash_photo_job(item: tuple[str, tuple[str, int, tuple[str, ...]]]) -> PhotoHashes:
    _load_matchers(item[0])
    return hash_photo(item[1])


def _listed_image_job(item: tuple[str, tuple[int, int, str, int, str | None]]) -> ListedImage:
    _load_matchers(item[0])
    return listed_image(item[1])


def _hard_queries_job(item: tuple[str, tuple[int, str, int, tuple[str, ...]]]) -> list[HardQuery]:
    _load_matchers(item[0])
    return hard_queries(item[1])


def runs_on(matcher: ListMatcher, transform: Transform) -> bool:
    """Whether ``matcher`` answers copies made by ``transform`` (see ``ListMatcher.scope``)."""
    if matcher.scope == "all" or transform.goal is not None:
        return True
    if matcher.scope == "goals":
        return transform.quick
    return transform.name == "identity (PNG)"


def _decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as decoded:
        return decoded.convert("RGB")


@dataclass
class PhotoHashes:
    path: str
    list_hash: dict[str, bytes | None]  # contender -> the list entry (None: could not hash)
    original: dict[str, list[bytes]]  # contender -> query hashes of the original as an upload
    original_quality: dict[str, int | None]
    copies: dict[str, list[list[bytes]]]  # contender -> per transform, query hashes
    quality: dict[str, list[int | None]]
    seconds: float
    #: list matcher -> [the original, then each transform]: what it matched (None: not run)
    found: dict[str, list[Found | None]] = field(default_factory=dict)
    #: contender -> seconds per transformed copy (hashing, or describing and matching)
    times: dict[str, list[float]] = field(default_factory=dict)
    #: the same, in CPU seconds of the worker process (one thread): fair under a busy machine
    cpu: dict[str, list[float]] = field(default_factory=dict)


def hash_photo(job: tuple[str, int, tuple[str, ...]]) -> PhotoHashes:
    path, max_side, names = job
    if not _WORKER:
        _WORKER.update(_hash_functions()[0])
    started = time.perf_counter()
    transforms = select(False, names)
    image = load_original(Path(path), max_side)
    seed = zlib.crc32(path.encode())
    original_bytes = io.BytesIO()
    image.save(original_bytes, "PNG", compress_level=1)
    data = original_bytes.getvalue()
    result = PhotoHashes(path, {}, {}, {}, {}, {}, 0.0)
    reference = reference_pdq(image)
    for name, (contender, fn) in _WORKER.items():
        values, quality = fn(data, image)
        result.original[name] = values
        result.original_quality[name] = quality
        own = values[0] if values else None
        result.list_hash[name] = reference if contender.bits == 256 and contender.gate else own
        result.copies[name], result.quality[name] = [], []
    forms: dict[str, list[tuple[int, object]]] = {m.name: [] for m in _MATCHERS}
    for matcher in _MATCHERS:
        forms[matcher.name].append((0, matcher.query_form(data, image)))
    for name in [*_WORKER, *(m.name for m in _MATCHERS)]:
        result.times[name], result.cpu[name] = [], []
    for t, transform in enumerate(transforms, start=1):
        copy = transform.apply(image, seed)
        rgb = _decoded(copy)
        for name, (_, fn) in _WORKER.items():
            t0, c0 = time.perf_counter(), time.process_time()
            values, quality = fn(copy, rgb)
            result.times[name].append(time.perf_counter() - t0)
            result.cpu[name].append(time.process_time() - c0)
            result.copies[name].append(values)
            result.quality[name].append(quality)
        for matcher in _MATCHERS:
            if runs_on(matcher, transform):
                t0, c0 = time.perf_counter(), time.process_time()
                forms[matcher.name].append((t, matcher.query_form(copy, rgb)))
                result.times[matcher.name].append(time.perf_counter() - t0)
                result.cpu[matcher.name].append(time.process_time() - c0)
    for matcher in _MATCHERS:
        batch = forms[matcher.name]
        t0, c0 = time.perf_counter(), time.process_time()
        answers = matcher.match([form for _, form in batch])
        share = (time.perf_counter() - t0) / max(1, len(batch))
        cpu_share = (time.process_time() - c0) / max(1, len(batch))
        # the batch's matching time, shared out over the copies (the original's share dropped)
        result.times[matcher.name] = [x + share for x in result.times[matcher.name]]
        result.cpu[matcher.name] = [x + cpu_share for x in result.cpu[matcher.name]]
        found: list[Found | None] = [None] * (len(transforms) + 1)
        for (t, _), answer in zip(batch, answers, strict=True):
            found[t] = answer
        result.found[matcher.name] = found
    result.seconds = time.perf_counter() - started
    return result


# --- the list matchers' lists, and the hard negatives (worker processes) ------------------------


@dataclass
class ListedImage:
    """One entry of the list matchers' lists: an original (overlay None) or a hard negative's
    listed side; with the Hamming contenders' list values for the hard negatives."""

    key: int
    photo: int
    overlay: str | None
    forms: dict[str, object]
    list_hash: dict[str, bytes | None]


def listed_image(job: tuple[int, int, str, int, str | None]) -> ListedImage:
    key, photo, path, max_side, overlay_name = job
    if not _WORKER:
        _WORKER.update(_hash_functions()[0])
    image = load_original(Path(path), max_side)
    list_hash: dict[str, bytes | None] = {}
    if overlay_name is None:
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=1)
        data = buffer.getvalue()
    else:
        overlay = next(o for o in OVERLAYS if o.name == overlay_name)
        data = overlay.apply(image, zlib.crc32(path.encode()), listed=True)
        image = _decoded(data)
        for name, (contender, fn) in _WORKER.items():
            values, _ = fn(data, image)
            own = values[0] if values else None
            list_hash[name] = reference_pdq(image) if contender.gate else own
    forms = {m.name: m.listed_form(data, image) for m in _MATCHERS}
    return ListedImage(key, photo, overlay_name, forms, list_hash)


@dataclass
class HardQuery:
    """One unlisted photo under one overlay, as each contender sees it."""

    photo: int
    overlay: str
    hashes: dict[str, tuple[list[bytes], int | None]]
    found: dict[str, Found]


def hard_queries(job: tuple[int, str, int, tuple[str, ...]]) -> list[HardQuery]:
    photo, path, max_side, overlay_names = job
    if not _WORKER:
        _WORKER.update(_hash_functions()[0])
    image = load_original(Path(path), max_side)
    out = []
    forms: dict[str, list[object]] = {m.name: [] for m in _MATCHERS}
    for overlay_name in overlay_names:
        overlay = next(o for o in OVERLAYS if o.name == overlay_name)
        data = overlay.apply(image, zlib.crc32(path.encode()), listed=False)
        rgb = _decoded(data)
        hashes = {name: fn(data, rgb) for name, (_, fn) in _WORKER.items()}
        out.append(HardQuery(photo, overlay_name, hashes, {}))
        for matcher in _MATCHERS:
            forms[matcher.name].append(matcher.query_form(data, rgb))
    for matcher in _MATCHERS:
        for query, answer in zip(out, matcher.match(forms[matcher.name]), strict=True):
            query.found[matcher.name] = answer
    return out


def save_hashes(path: Path, photos: list[PhotoHashes]) -> None:
    """Keep the hashes (hex, JSON) so the tables can be recomputed without re-hashing."""

    def hexes(values: list[bytes]) -> list[str]:
        return [v.hex() for v in values]

    rows = [
        {
            "path": p.path,
            "list_hash": {k: v.hex() if v is not None else None for k, v in p.list_hash.items()},
            "original": {k: hexes(v) for k, v in p.original.items()},
            "original_quality": p.original_quality,
            "copies": {k: [hexes(c) for c in v] for k, v in p.copies.items()},
            "quality": p.quality,
            "seconds": p.seconds,
            "found": {
                k: [f.to_json() if f is not None else None for f in v] for k, v in p.found.items()
            },
            "times": p.times,
            "cpu": p.cpu,
        }
        for p in photos
    ]
    path.write_text(json.dumps(rows))


def load_hashes(
    path: Path, jobs: list[tuple[str, int, tuple[str, ...]]], matchers: Sequence[str]
) -> list[PhotoHashes]:
    """The cached photos that are a prefix of ``jobs`` (same photos, same transforms, same
    list matchers: their answers depend on the whole list, so a changed list re-runs them)."""

    def raw(values: list[str]) -> list[bytes]:
        return [bytes.fromhex(v) for v in values]

    out = []
    for row, (job_path, _, names) in zip(json.loads(path.read_text()), jobs, strict=False):
        if row["path"] != job_path or any(len(v) != len(names) for v in row["copies"].values()):
            break
        if sorted(row.get("found", {})) != sorted(matchers):
            break
        out.append(
            PhotoHashes(
                row["path"],
                {k: bytes.fromhex(v) if v else None for k, v in row["list_hash"].items()},
                {k: raw(v) for k, v in row["original"].items()},
                row["original_quality"],
                {k: [raw(c) for c in v] for k, v in row["copies"].items()},
                row["quality"],
                row["seconds"],
                {
                    k: [Found.from_json(f) if f is not None else None for f in v]
                    for k, v in row["found"].items()
                },
                row.get("times", {}),
                row.get("cpu", {}),
            )
        )
    return out


# --- scoring ------------------------------------------------------------------------------------


def _stack(rows: Sequence[list[bytes]], size: int) -> tuple[U8, npt.NDArray[np.bool_]]:
    """(n, variants, bytes), padding short variant lists with their first hash, and a mask of
    the rows that have no hash at all (the contender declined to hash that image)."""
    width = max(1, *(len(r) for r in rows))
    empty = np.array([not r for r in rows])
    blank = bytes(size)
    padded = [r + [r[0]] * (width - len(r)) if r else [blank] * width for r in rows]
    return np.array([[np.frombuffer(v, np.uint8) for v in r] for r in padded]), empty


def _min_distance(queries: U8, entries: U8) -> npt.NDArray[np.int32]:
    """(n, m): min over each query's variants of the Hamming distance to each list entry."""
    xor = queries[:, None, :, :] ^ entries[None, :, None, :]
    return np.bitwise_count(xor).sum(axis=3, dtype=np.int32).min(axis=2)


@dataclass
class Scores:
    genuine: npt.NDArray[np.int32]  # (photos, transforms)
    impostor: npt.NDArray[np.int32]  # (photos * transforms * (photos - 1),)
    pairs: npt.NDArray[np.int32]  # (photos * (photos - 1) / 2,) originals vs originals
    gated: npt.NDArray[np.bool_]  # (photos, transforms): quality below the floor
    unlisted: int  # originals the contender could not hash (no list entry)


def score(name: str, contender: Contender, photos: list[PhotoHashes]) -> Scores:
    never = contender.bits + 1  # a distance no threshold reaches
    size = contender.bits // 8
    entry_rows = [[h] if h is not None else [] for h in (p.list_hash[name] for p in photos)]
    listed, unlisted = _stack(entry_rows, size)
    entries = listed[:, 0, :]
    n, t = len(photos), len(photos[0].copies[name])
    genuine = np.zeros((n, t), np.int32)
    gated = np.zeros((n, t), bool)
    impostor = []
    off_diagonal = ~np.eye(n, dtype=bool)
    for i, photo in enumerate(photos):
        queries, no_hash = _stack(photo.copies[name], size)
        distances = _min_distance(queries, entries)  # (t, n)
        distances[no_hash] = never
        distances[:, unlisted] = never
        if contender.gate:
            low = np.array([q is not None and q < MIN_QUALITY for q in photo.quality[name]])
            distances[low] = never
            gated[i] = low
        genuine[i] = distances[:, i]
        impostor.append(distances[:, off_diagonal[i]].ravel())
    queries, no_hash = _stack([p.original[name] for p in photos], size)
    originals = _min_distance(queries, entries)
    originals[no_hash] = never
    originals[:, unlisted] = never
    if contender.gate:
        low = np.array([(p.original_quality[name] or 100) < MIN_QUALITY for p in photos])
        originals[low] = never
    both = np.minimum(originals, originals.T)
    pairs = both[np.triu_indices(n, 1)]
    return Scores(genuine, np.concatenate(impostor), pairs, gated, int(unlisted.sum()))


def recall(values: npt.NDArray[np.int32], threshold: int) -> float:
    return float((values <= threshold).mean()) if values.size else float("nan")


def equal_fmr_threshold(impostor: npt.NDArray[np.int32], target_rate: float, bits: int) -> int:
    """The largest threshold whose false-match rate is <= ``target_rate`` (-1: none)."""
    best = -1
    for threshold in range(bits + 1):
        if (impostor <= threshold).mean() <= target_rate:
            best = threshold
    return best


# --- hard negatives and the list matchers' scores -----------------------------------------------


@dataclass(frozen=True)
class HardPlan:
    """The hard negatives' photos, none of them among the originals whose copies are queried
    (a copy must not find its own photo under an overlay on the list): ``listed`` carry each
    overlay on the list, ``queries`` (unlisted) carry it as uploads; every accepted pair of
    the two is a false match. Indices are into ``paths``."""

    overlays: tuple[Overlay, ...]
    paths: tuple[Path, ...]
    listed: tuple[int, ...]
    queries: tuple[int, ...]

    @classmethod
    def make(cls, paths: Sequence[Path], per_side: int, overlays: Sequence[Overlay]) -> HardPlan:
        listed = tuple(range(0, len(paths), 2))[:per_side]
        queries = tuple(range(1, len(paths), 2))[:per_side]
        return cls(tuple(overlays), tuple(paths), listed, queries)

    def key(self, overlay: int, index: int) -> int:
        return HARD_BASE + overlay * 10_000 + index

    def photo(self, index: int) -> int:
        """The photo id of ``paths[index]``, apart from the originals' ids (their indices)."""
        return HARD_PHOTO + index

    def photo_of(self, key: int) -> int:
        return key if key < HARD_BASE else HARD_PHOTO + (key - HARD_BASE) % 10_000

    @property
    def pairs(self) -> int:
        return len(self.overlays) * len(self.queries)


def build_lists(
    pool: Any, workdir: Path, args: argparse.Namespace, paths: Sequence[Path], plan: HardPlan
) -> list[ListedImage]:
    """Fill the list matchers' lists (every original, then the hard negatives' listed side)
    and return the hard negatives' listed side for the Hamming contenders."""
    jobs: list[tuple[int, int, str, int, str | None]] = []
    if _MATCHERS:
        jobs += [(i, i, str(p), args.max_side, None) for i, p in enumerate(paths)]
    for o, overlay in enumerate(plan.overlays):
        jobs += [
            (plan.key(o, a), plan.photo(a), str(plan.paths[a]), args.max_side, overlay.name)
            for a in plan.listed
        ]
    hard: list[ListedImage] = []
    state = save_matchers(workdir, "empty")
    for entry in pool.imap(_listed_image_job, [(state, job) for job in jobs], chunksize=2):
        for matcher in _MATCHERS:
            matcher.add(entry.key, entry.forms[matcher.name])
        if entry.overlay is not None:
            hard.append(entry)
    for matcher in _MATCHERS:
        matcher.finish()
    print(f"  listed {len(jobs)} images for the list matchers", file=sys.stderr)
    return hard


@dataclass
class HardScores:
    """False matches of hard-negative queries: pairs (query, listed entry of another photo)."""

    false_pairs: int
    checks: int
    by_overlay: dict[str, int]
    best: float  # the closest false pair (a distance for Hamming, a score for list matchers)


def hard_negatives_hamming(
    name: str,
    contender: Contender,
    photos: list[PhotoHashes],
    hard_listed: list[ListedImage],
    hard: list[HardQuery],
) -> HardScores:
    """Each hard query against every listed value (the originals and the overlaid listed
    photos) of a photo other than its own."""
    never = contender.bits + 1
    entries = [(i, p.list_hash[name]) for i, p in enumerate(photos)]
    entries += [(e.photo, e.list_hash.get(name)) for e in hard_listed]
    usable = [(photo, v) for photo, v in entries if v is not None]
    by_overlay: dict[str, int] = {}
    false_pairs, checks, best = 0, 0, never
    if not usable or not hard:
        return HardScores(0, 0, {}, float(never))
    listed = np.array([np.frombuffer(v, np.uint8) for _, v in usable])
    owners = np.array([photo for photo, _ in usable])
    for query in hard:
        values, quality = query.hashes[name]
        others = owners != query.photo
        checks += int(others.sum())
        if not values or (contender.gate and quality is not None and quality < MIN_QUALITY):
            continue
        rows = np.array([[np.frombuffer(v, np.uint8) for v in values]])
        distances = _min_distance(rows, listed)[0][others]
        hits = int((distances <= contender.threshold).sum())
        false_pairs += hits
        by_overlay[query.overlay] = by_overlay.get(query.overlay, 0) + hits
        best = min(best, int(distances.min()) if distances.size else never)
    return HardScores(false_pairs, checks, by_overlay, float(best))


@dataclass
class ListScores:
    """A list matcher's answers, by query: ``genuine`` (photos, transforms) holds the score of
    the copy's own entry (NaN: not run; -inf: not matched), false pairs and their scores."""

    name: str
    score_name: str
    threshold: float
    floor: float | None  # the lowest score a pair is reported with (None: matches only)
    genuine: npt.NDArray[np.float64]
    matched: npt.NDArray[np.bool_]  # (photos, transforms): detected at the operating point
    distractor_scores: list[float]  # scores of false pairs, copies/originals vs other photos
    distractor_false: int  # false pairs matched at the operating point
    distractor_checks: int
    hard: HardScores
    hard_scores: list[float]


def score_list_matcher(
    matcher: ListMatcher,
    photos: list[PhotoHashes],
    transforms: Sequence[Transform],
    plan: HardPlan,
    hard: list[HardQuery],
) -> ListScores:
    n, t = len(photos), len(transforms)
    entries = n + len(plan.overlays) * len(plan.listed)
    genuine = np.full((n, t), np.nan)
    matched = np.zeros((n, t), bool)
    distractor_scores: list[float] = []
    false_pairs = checks = 0
    for i, photo in enumerate(photos):
        for position, found in enumerate(photo.found[matcher.name]):
            if found is None:
                continue
            checks += entries - 1
            if position:
                own = i in found.matched
                matched[i, position - 1] = own
                genuine[i, position - 1] = found.scores.get(i, np.inf if own else -np.inf)
            for key, value in found.scores.items():
                if plan.photo_of(key) != i:
                    distractor_scores.append(value)
            false_pairs += sum(plan.photo_of(k) != i for k in found.matched)
    by_overlay: dict[str, int] = {}
    hard_scores: list[float] = []
    hard_false = 0
    for query in hard:
        found = query.found[matcher.name]
        hits = sum(plan.photo_of(k) != query.photo for k in found.matched)
        hard_false += hits
        by_overlay[query.overlay] = by_overlay.get(query.overlay, 0) + hits
        hard_scores += [v for k, v in found.scores.items() if plan.photo_of(k) != query.photo]
    hard_summary = HardScores(
        hard_false,
        len(hard) * (entries - 1),
        by_overlay,
        max(hard_scores, default=float("nan")),
    )
    return ListScores(
        matcher.name,
        matcher.score_name,
        matcher.threshold,
        matcher.floor,
        genuine,
        matched,
        distractor_scores,
        false_pairs,
        checks,
        hard_summary,
        hard_scores,
    )


def zero_false_cutoff(scores: ListScores) -> float | None:
    """The lowest score cut-off at which no false pair (distractor or hard) is accepted."""
    worst = max([*scores.distractor_scores, *scores.hard_scores], default=None)
    return None if worst is None else worst + 1


# --- report -------------------------------------------------------------------------------------


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    data_dir = find_data_dir()
    listed = (data_dir / "expected_computed" / "distinct_natural_photos.txt").read_text()
    paths = [data_dir / line.strip() for line in listed.splitlines() if line.strip()]
    for folder in args.images:
        paths += sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.quick and not args.photos:
        args.photos = 4
    if args.quick:
        args.hard_photos = min(args.hard_photos, 1)
    pool_paths = list(paths)
    if args.photos:
        step = max(1, len(paths) // args.photos)
        paths = paths[::step][: args.photos]
    # The hard negatives' photos: ones not selected, else the last selected ones, taken out.
    spare = [p for p in pool_paths if p not in set(paths)]
    taken = max(0, min(2 * args.hard_photos - len(spare), len(paths) - 2))
    hard_paths = spare[: 2 * args.hard_photos] + (paths[len(paths) - taken :] if taken else [])
    paths = paths[: len(paths) - taken]
    transforms = select(args.quick, args.transforms)
    if args.goals:
        transforms = tuple(t for t in transforms if t.goal or (t.quick and t.group == "standard"))
    functions, missing = _hash_functions()
    contenders = {name: c for name, (c, _) in functions.items()}
    workdir = tempfile.TemporaryDirectory(prefix="bench-detection-")
    matchers, missing_matchers = list_matchers(Path(workdir.name))
    if args.quick:  # a smoke-sized run: the goal edits and the identity only
        for matcher in list(matchers):
            if matcher.scope == "goals":  # the segment hash takes seconds per image
                matchers.remove(matcher)
                missing_matchers[matcher.name] = "too slow for --quick (seconds per image)"
            matcher.scope = "goals only"
    missing.update(missing_matchers)
    for name, reason in missing_matchers.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    overlays = [o for o in OVERLAYS if o.quick or not args.quick]
    plan = HardPlan.make(hard_paths, args.hard_photos, overlays)

    print("# Detection quality\n")
    print_machine_info([("workers", str(args.workers))])
    # Spawned, not forked: building the lists runs OpenCV and faiss thread pools in this
    # process, and a forked child that touches them again can hang.
    pool = multiprocessing.get_context("spawn").Pool(args.workers)
    _MATCHERS[:] = matchers
    hard_listed = build_lists(pool, Path(workdir.name), args, paths, plan)
    state = save_matchers(Path(workdir.name), "built")
    hard_s = time.perf_counter() - started
    jobs = [(str(p), args.max_side, tuple(t.name for t in transforms)) for p in paths]
    photos: list[PhotoHashes] = []
    cached = 0
    if args.cache and args.cache.is_file():
        photos = load_hashes(args.cache, jobs, [m.name for m in matchers])
    cached = len(photos)
    hard_jobs = [
        (plan.photo(j), str(plan.paths[j]), args.max_side, tuple(o.name for o in plan.overlays))
        for j in plan.queries
    ]
    with pool:
        todo = [(state, job) for job in jobs[len(photos) :]]
        for photo in pool.imap(_hash_photo_job, todo, chunksize=1):
            photos.append(photo)
            done = len(photos)
            if done % 10 == 0 or done == len(jobs):
                elapsed = time.perf_counter() - started
                print(f"  hashed {done}/{len(jobs)} photos, {elapsed:.0f} s", file=sys.stderr)
        hard_todo = [(state, job) for job in hard_jobs]
        hard = [q for batch in pool.imap(_hard_queries_job, hard_todo) for q in batch]
    workdir.cleanup()
    if args.cache:
        save_hashes(args.cache, photos)
    hashed_s = time.perf_counter() - started
    scores = {name: score(name, c, photos) for name, c in contenders.items()}
    hard_scores = {
        name: hard_negatives_hamming(name, c, photos, hard_listed, hard)
        for name, c in contenders.items()
    }
    listed_scores = {
        m.name: score_list_matcher(m, photos, transforms, plan, hard) for m in matchers
    }

    lines: list[str] = []
    out = Report(lines)
    out.text("## Machine and threads")
    out.table(
        ["", ""],
        [
            *machine_info(),
            ("worker processes", str(args.workers)),
            ("OpenCV threads per worker", "1 (cv2.setNumThreads)"),
        ],
    )
    out.header(photos, transforms, contenders, missing, hashed_s, data_dir, cached)
    eq = out.thresholds(scores, contenders)
    out.families(scores, contenders, transforms, eq)
    out.false_matches(scores, contenders, eq)
    out.curve_table(scores, contenders, transforms)
    out.targets(scores, transforms, photos)
    out.weaknesses(scores, contenders, eq, transforms, photos)
    out.crop_robust(scores, contenders, listed_scores, transforms)
    out.false_and_hard(scores, contenders, hard_scores, listed_scores, plan)
    out.timing(photos, contenders, listed_scores, hard_s)
    per_transform = per_transform_table(scores, contenders, transforms, listed_scores)

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
    plots = make_plots(scores, contenders, transforms, eq, args.out, suffix)
    lines.append("## Plots\n")
    lines += [f"- {p}" for p in plots] or ["- matplotlib not installed: no plots"]
    lines.append("")
    lines.append(f"Per-transform table: detection_per_transform{suffix}.md")
    lines.append(f"Total time: {time.perf_counter() - started:.0f} s")
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / f"detection{suffix}.md").write_text(text)
    (args.out / f"detection_per_transform{suffix}.md").write_text(per_transform)
    return 0


class Report:
    """Markdown sections appended to ``lines`` (printed and saved at the end)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        buffer = io.StringIO()
        stdout, sys.stdout = sys.stdout, buffer
        try:
            print_table(headers, rows)
        finally:
            sys.stdout = stdout
        self.lines.append(buffer.getvalue())

    def text(self, *paragraphs: str) -> None:
        self.lines.extend([*paragraphs, ""])

    def header(
        self,
        photos: list[PhotoHashes],
        transforms: Sequence[Transform],
        contenders: dict[str, Contender],
        missing: dict[str, str],
        seconds: float,
        data_dir: Path,
        cached: int,
    ) -> None:
        per_photo = [p.seconds for p in photos]
        self.text(
            "## Setup",
            f"- originals: {len(photos)} distinct photos ({data_dir}), capped at the long side",
            f"- transforms: {len(transforms)} ({', '.join(GROUPS)} groups); "
            f"{len(photos) * len(transforms)} transformed images, each hashed once per contender",
            f"- contenders: {', '.join(n for n, c in contenders.items() if not c.analysis)}",
            f"- missing peers: {missing or 'none'}",
            f"- hashing wall time {seconds:.0f} s, {cached} of {len(photos)} photos' hashes "
            f"reused from --cache; when hashed, {np.median(per_photo):.1f} s per photo (median) "
            f"and {sum(per_photo):.0f} s summed over photos (worker time, {len(photos)} photos)",
        )

    def thresholds(
        self, scores: dict[str, Scores], contenders: dict[str, Contender]
    ) -> dict[str, int]:
        target = float((scores[OURS].impostor <= PDQ_THRESHOLD).mean())
        eq = {
            n: equal_fmr_threshold(scores[n].impostor, target, c.bits)
            for n, c in contenders.items()
            if c.bits == 64
        }
        rows = [
            (n, c.bits, c.threshold, eq.get(n, "-"), "yes" if c.gate else "no", scores[n].unlisted)
            for n, c in contenders.items()
        ]
        self.text("## Thresholds")
        headers = ["contender", "bits", "default/conventional", "equal FMR", "quality gate"]
        self.table([*headers, "originals it declined to hash"], rows)
        self.text(
            f"Equal FMR: the largest threshold whose false-match rate on transformed-vs-distinct "
            f"pairs is <= uploadscan's at {PDQ_THRESHOLD} ({target:.2e})."
        )
        return eq

    def _columns(
        self, contenders: dict[str, Contender], eq: dict[str, int]
    ) -> list[tuple[str, str, int]]:
        cols = []
        for name, c in contenders.items():
            cols.append((f"{name} @{c.threshold}", name, c.threshold))
            if name in eq:
                cols.append((f"{name} @{eq[name]} (eq. FMR)", name, eq[name]))
        return cols

    def families(
        self,
        scores: dict[str, Scores],
        contenders: dict[str, Contender],
        transforms: Sequence[Transform],
        eq: dict[str, int],
    ) -> None:
        cols = self._columns(contenders, eq)
        rows: list[list[object]] = []
        for group in GROUPS:
            idx = [i for i, t in enumerate(transforms) if t.group == group]
            if not idx:
                continue
            for family in dict.fromkeys(transforms[i].family for i in idx):
                fidx = [i for i in idx if transforms[i].family == family]
                rows.append(
                    [f"{group}: {family}", len(fidx)]
                    + [pct(recall(scores[n].genuine[:, fidx], th)) for _, n, th in cols]
                )
            rows.append(
                [f"**{group} (all)**", len(idx)]
                + [pct(recall(scores[n].genuine[:, idx], th)) for _, n, th in cols]
            )
        self.text("## Recall per transform family")
        self.table(["family", "transforms", *(c[0] for c in cols)], rows)

    def false_matches(
        self, scores: dict[str, Scores], contenders: dict[str, Contender], eq: dict[str, int]
    ) -> None:
        rows = []
        for label, name, th in self._columns(contenders, eq):
            s = scores[name]
            rows.append(
                (
                    label,
                    f"{int((s.pairs <= th).sum())} / {s.pairs.size}",
                    int(s.pairs.min()),
                    f"{int((s.impostor <= th).sum())} / {s.impostor.size}",
                    f"{(s.impostor <= th).mean():.2e}",
                    int(s.impostor.min()),
                )
            )
        self.text(
            "## False matches",
            "Originals: unordered pairs of distinct photos (a pair counts if either direction "
            "matches). Copies: every transformed copy of A against every original B != A.",
        )
        self.table(
            [
                "contender",
                "originals pairs",
                "min dist",
                "copies vs others",
                "rate",
                "min dist",
            ],
            rows,
        )

    def curve_table(
        self,
        scores: dict[str, Scores],
        contenders: dict[str, Contender],
        transforms: Sequence[Transform],
    ) -> None:
        std = [i for i, t in enumerate(transforms) if t.group == "standard"]
        rows = []
        for name, c in contenders.items():
            ths = (8, 16, 24, 31, 40, 48, 56, 64) if c.bits == 256 else (2, 4, 6, 8, 10, 12, 14)
            for th in ths:
                s = scores[name]
                rows.append(
                    (
                        name,
                        th,
                        pct(recall(s.genuine[:, std], th)),
                        pct(recall(s.genuine[:, self.group(transforms, "crop")], th)),
                        pct(recall(s.genuine[:, self.group(transforms, "rotate-small")], th)),
                        int((s.impostor <= th).sum()),
                        f"{(s.impostor <= th).mean():.2e}",
                    )
                )
        self.text("## Recall and false matches across thresholds")
        self.table(
            ["contender", "threshold", "standard", "crop", "rotate-small", "false", "rate"], rows
        )

    @staticmethod
    def group(transforms: Sequence[Transform], group: str) -> list[int]:
        return [i for i, t in enumerate(transforms) if t.group == group]

    def targets(
        self, scores: dict[str, Scores], transforms: Sequence[Transform], photos: list[PhotoHashes]
    ) -> None:
        s = scores[OURS]
        g = s.genuine

        def idx(*families: str, group: str = "standard") -> list[int]:
            return [
                i
                for i, t in enumerate(transforms)
                if t.group == group and (not families or t.family in families)
            ]

        checks = [
            ("recall over standard transforms", idx(), 0.95),
            ("mirrors and 90/180/270 rotations", idx("mirror", "rotate-90s"), 1.0),
            ("border / letterbox / padding", idx("border/letterbox/pad"), 0.95),
        ]
        rows: list[tuple[str, str, str, str]] = []
        listable = np.array([(p.original_quality[OURS] or 0) >= MIN_QUALITY for p in photos])
        for label, ids, goal in checks:
            if not ids:
                continue
            for name, pool in ((label, g), (f"{label}, listable originals", g[listable])):
                value = recall(pool[:, ids], PDQ_THRESHOLD)
                status = "met" if value >= goal else "NOT met"
                rows.append((name, f">= {pct(goal)}", pct(value), status))
        false = int((s.pairs <= PDQ_THRESHOLD).sum())
        rows.append(
            (
                "false matches, distinct originals",
                "0",
                str(false),
                "met" if false == 0 else "NOT met",
            )
        )
        false_copies = int((s.impostor <= PDQ_THRESHOLD).sum())
        rows.append(
            ("false matches, copies vs other originals", "0 (no target)", str(false_copies), "-")
        )
        self.text(
            f"## Targets (uploadscan defaults, threshold {PDQ_THRESHOLD})",
            f"Listable originals: those whose PDQ quality is >= {MIN_QUALITY}. The others cannot "
            "match any copy under the quality floor (python-threatexchange declines to hash "
            "them at all), so they cap every recall figure over all originals.",
        )
        self.table(["target", "goal", "measured", "status"], rows)

    def weaknesses(
        self,
        scores: dict[str, Scores],
        contenders: dict[str, Contender],
        eq: dict[str, int],
        transforms: Sequence[Transform],
        photos: list[PhotoHashes],
    ) -> None:
        s = scores[OURS]
        impostor_sorted = np.sort(s.impostor)
        rows = []
        for i, t in enumerate(transforms):
            col = s.genuine[:, i]
            r = recall(col, PDQ_THRESHOLD)
            if r >= 0.95:
                continue
            finite = col[col <= 256]
            need = int(np.percentile(finite, 95)) if finite.size else -1
            fm = int(np.searchsorted(impostor_sorted, need, side="right"))
            trimmed = np.mean([len(p.copies[OURS][i]) > 8 for p in photos])
            best = max(
                (
                    (recall(scores[n].genuine[:, i], th), label)
                    for label, n, th in self._columns(
                        {k: c for k, c in contenders.items() if k != OURS}, eq
                    )
                ),
                default=(float("nan"), "-"),
            )
            rows.append(
                (
                    t.name,
                    t.group,
                    pct(r),
                    int(np.median(finite)) if finite.size else "-",
                    need,
                    f"{fm} ({fm / max(1, s.impostor.size):.1e})",
                    int(s.gated[:, i].sum()),
                    pct(float(trimmed)),
                    f"{best[1]}: {pct(best[0])}",
                )
            )
        self.text(
            f"## Where uploadscan falls short (transforms with recall < 95% at {PDQ_THRESHOLD})",
            "`95% needs`: the threshold at which 95% of this transform's copies would match; "
            "`false at that`: how many copy-vs-other-original pairs would then falsely match. "
            "`quality<50`: copies not matched because their PDQ quality is below the floor. "
            "`trimmed`: share of copies for which uploadscan found borders and added trimmed "
            "query variants. `best peer`: the best other contender on this transform.",
        )
        if rows:
            self.table(
                [
                    "transform",
                    "group",
                    "recall",
                    "median dist",
                    "95% needs",
                    "false at that",
                    "quality<50",
                    "trimmed",
                    "best peer",
                ],
                rows,
            )
        else:
            self.text("None: every transform reaches 95%.")
        low = [p.path for p in photos if (p.original_quality[OURS] or 100) < MIN_QUALITY]
        self.text(f"Originals whose own PDQ quality is below {MIN_QUALITY}: {len(low)} {low}")

    def crop_robust(
        self,
        scores: dict[str, Scores],
        contenders: dict[str, Contender],
        listed: dict[str, ListScores],
        transforms: Sequence[Transform],
    ) -> None:
        """Recall on the goal edits of crop-robust matching, every contender side by side."""
        columns: list[tuple[str, Callable[[list[int]], float]]] = []
        for name, c in contenders.items():
            columns.append(
                (
                    f"{name} @{c.threshold}",
                    lambda idx, n=name, th=c.threshold: recall(scores[n].genuine[:, idx], th),
                )
            )
        for name, ls in listed.items():
            columns.append((name, lambda idx, ls=ls: list_recall(ls, idx)))
            cutoff = zero_false_cutoff(ls)
            if ls.threshold < (cutoff or 0):
                columns.append(
                    (
                        f"{name} >= {cutoff:g} (0 false)",
                        lambda idx, ls=ls, c=cutoff: list_recall(ls, idx, c),
                    )
                )
        rows: list[list[object]] = []
        for goal in GOALS:
            idx = _goal_idx(transforms, goal)
            if idx:
                rows.append([f"{goal}", len(idx)] + [pct(fn(idx)) for _, fn in columns])
        for label, idx in (
            ("**all goal edits** (target >= 95%)", _goal_idx(transforms, None)),
            ("**standard, not goal** (target 100%)", _standard_idx(transforms)),
        ):
            if idx:
                rows.append([label, len(idx)] + [pct(fn(idx)) for _, fn in columns])
        self.text(
            "## Crop-robust goals: recall per goal family",
            "The goal edits: crops of 4-20% (symmetric and 15% off two sides), rotations of "
            "3-7 degrees (plain and with a 5% crop), screenshots (the photo at 60% of a canvas "
            "with interface chrome), caption bands and corner logos. Hamming contenders at their "
            "default or conventional threshold; list matchers at their operating point, and "
            "where it differs at the lowest cut-off that accepts no false pair "
            "(distractors and hard negatives).",
        )
        self.table(["goal family", "transforms", *(name for name, _ in columns)], rows)
        goal_rows = []
        for i in _goal_idx(transforms, None):
            goal_rows.append(
                [transforms[i].name, transforms[i].goal] + [pct(fn([i])) for _, fn in columns]
            )
        self.text("### Recall per goal edit")
        self.table(["transform", "goal", *(name for name, _ in columns)], goal_rows)

    def false_and_hard(
        self,
        scores: dict[str, Scores],
        contenders: dict[str, Contender],
        hard: dict[str, HardScores],
        listed: dict[str, ListScores],
        plan: HardPlan,
    ) -> None:
        rows: list[list[object]] = []
        for name, c in contenders.items():
            s = scores[name]
            distractors = int((s.impostor <= c.threshold).sum()) + int(
                (s.pairs <= c.threshold).sum()
            )
            h = hard[name]
            rows.append(
                [
                    f"{name} @{c.threshold}",
                    f"{distractors} / {s.impostor.size + s.pairs.size}",
                    f"{h.false_pairs} / {h.checks}",
                    f"distance {int(min(s.impostor.min(), s.pairs.min()))}",
                    f"distance {h.best:g}",
                    "-",
                    "every pair",
                ]
            )
        for name, ls in listed.items():
            best = max(ls.distractor_scores, default=float("nan"))
            hard_best = ls.hard.best
            worst = max(
                (x for x in (best, hard_best) if x == x),
                default=float("nan"),
            )
            if worst == worst:
                margin = f"{ls.threshold / worst:.2f}x"
            elif ls.floor is not None and ls.floor > 1:
                margin = f">= {ls.threshold / (ls.floor - 1):.2f}x (none reported)"
            else:
                margin = "no false pair reported"
            rows.append(
                [
                    f"{name} (>= {ls.threshold:g} {ls.score_name})",
                    f"{ls.distractor_false} / {ls.distractor_checks}",
                    f"{ls.hard.false_pairs} / {ls.hard.checks}",
                    f"{ls.score_name} {best:g}" if best == best else "none reported",
                    f"{ls.score_name} {hard_best:g}" if hard_best == hard_best else "none reported",
                    margin,
                    "matches only" if ls.floor is None else f"{ls.floor:g}",
                ]
            )
            cutoff = zero_false_cutoff(ls)
            if cutoff is not None and cutoff > ls.threshold:
                self.lines.append(
                    f"- {name}: the first cut-off with 0 false matches is {cutoff:g} "
                    f"{ls.score_name}."
                )
        self.text(
            "## False matches: distractors and hard negatives",
            "Distractors: every transformed copy and every original of photo A against the "
            "listed entries of every other photo (pairs; for the list matchers these entries "
            "include the hard negatives' listed side). Hard negatives: "
            f"{len(plan.queries)} unlisted photos under each of {len(plan.overlays)} overlays "
            f"({', '.join(o.name for o in plan.overlays)}), the same overlay on "
            f"{len(plan.listed)} other, listed photos (none of these photos is among the "
            "originals whose copies are queried); pairs against every entry of another "
            "photo. Closest false pair: the smallest Hamming distance, or the highest score a "
            "list matcher reported for a pair of different photos (list matchers report only "
            "pairs their verification passes, down to the score in 'reported from': 'none "
            "reported' means every false pair scored below that). The own list reads them "
            "from a second list holding the same media at the lowest inlier setting the list "
            "accepts. Margin: threshold / closest false score; with none reported, at least "
            "threshold / (reported from - 1).",
        )
        self.table(
            [
                "contender",
                "distractor false pairs",
                "hard-negative false pairs",
                "closest false (distractors)",
                "closest false (hard)",
                "margin",
                "reported from",
            ],
            rows,
        )
        overlay_rows = [
            [o.name]
            + [hard[n].by_overlay.get(o.name, 0) for n in contenders]
            + [ls.hard.by_overlay.get(o.name, 0) for ls in listed.values()]
            for o in plan.overlays
        ]
        self.text("### Hard-negative false pairs per overlay")
        self.table(["overlay", *contenders, *listed], overlay_rows)

    def timing(
        self,
        photos: list[PhotoHashes],
        contenders: dict[str, Contender],
        listed: dict[str, ListScores],
        listing_s: float,
    ) -> None:
        names = [*contenders, *listed]
        wall = {n: [x for p in photos for x in p.times.get(n, [])] for n in names}
        cpu = {n: [x for p in photos for x in p.cpu.get(n, [])] for n in names}
        ours = statistics.median(cpu[OURS]) if cpu.get(OURS) else float("nan")
        rows = []
        for name in names:
            if not wall[name]:
                continue
            wall_ms, wall_p99 = summarize_ms(wall[name])
            row: list[object] = [name, len(wall[name]), f"{wall_ms:.1f}", f"{wall_p99:.1f}"]
            if cpu[name]:
                cpu_ms, cpu_p99 = summarize_ms(cpu[name])
                row += [f"{cpu_ms:.1f}", f"{cpu_p99:.1f}", f"{cpu_ms / 1000 / ours:.1f}x"]
            else:  # results cached before CPU time was recorded
                row += ["-", "-", "-"]
            rows.append(row)
        self.text(
            "## Time per transformed copy",
            "Per copy in one worker process (one thread): hashing for the Hamming contenders; "
            "for the list matchers describing plus matching against the list (perception's "
            "batch search and validation shared out over a photo's copies; the own list is "
            "one Scanner.scan: MD5, SHA-256, PDQ and the local features). Wall time counts "
            "whatever else the machine runs; CPU time is the worker's own. Medians and p99 "
            "over copies; ratio of CPU medians to uploadscan's PDQ hashing. Building the list "
            f"matchers' lists (every original and the hard negatives' listed side) took "
            f"{listing_s:.0f} s.",
        )
        headers = ["contender", "copies", "wall median ms", "wall p99 ms", "CPU median ms"]
        self.table([*headers, "CPU p99 ms", "CPU vs uploadscan"], rows)


def _goal_idx(transforms: Sequence[Transform], goal: str | None) -> list[int]:
    if goal is None:
        return [i for i, t in enumerate(transforms) if t.goal is not None]
    return [i for i, t in enumerate(transforms) if t.goal == goal]


def _standard_idx(transforms: Sequence[Transform]) -> list[int]:
    return [i for i, t in enumerate(transforms) if t.group == "standard" and t.goal is None]


def per_transform_table(
    scores: dict[str, Scores],
    contenders: dict[str, Contender],
    transforms: Sequence[Transform],
    listed: dict[str, ListScores],
) -> str:
    lines: list[str] = []
    report = Report(lines)
    rows = []
    for i, t in enumerate(transforms):
        g = scores[OURS].genuine[:, i]
        rows.append(
            [t.name, t.group, int(np.median(g)), int(np.percentile(g, 90)), int(g.max())]
            + [pct(recall(scores[n].genuine[:, i], c.threshold)) for n, c in contenders.items()]
            + [pct(list_recall(s, [i])) for s in listed.values()]
        )
    report.text(
        "# Detection recall per transform (default/conventional thresholds)",
        "Distances are uploadscan's (min over query variants, bits of 256; 257 = quality gate). "
        "List matchers at their operating points; n/a: not run on that transform.",
    )
    report.table(["transform", "group", "median", "p90", "max", *contenders, *listed], rows)
    return "\n".join(lines)


def list_recall(scores: ListScores, idx: Sequence[int], cutoff: float | None = None) -> float:
    """Share of the run copies among transforms ``idx`` detected (at ``cutoff``: score >= it)."""
    genuine = scores.genuine[:, list(idx)]
    ran = ~np.isnan(genuine)
    if not ran.any():
        return float("nan")
    if cutoff is None:
        return float(scores.matched[:, list(idx)][ran].mean())
    return float((genuine[ran] >= cutoff).mean())


def make_plots(
    scores: dict[str, Scores],
    contenders: dict[str, Contender],
    transforms: Sequence[Transform],
    eq: dict[str, int],
    out: Path,
    suffix: str,
) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    std = [i for i, t in enumerate(transforms) if t.group == "standard"]
    names: list[str] = []

    # 1. recall (standard transforms) vs false-match rate, thresholds swept.
    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=90)
    for name, c in contenders.items():
        s = scores[name]
        ths = np.arange(0, min(c.bits, 96) + 1)
        rate = np.array([(s.impostor <= th).mean() for th in ths])
        rec = np.array([recall(s.genuine[:, std], int(th)) for th in ths])
        floor = 0.5 / s.impostor.size
        style = "--" if c.analysis else "-"
        (line,) = ax.plot(np.maximum(rate, floor), rec, style, label=name, lw=1.5)
        for th, marker in ((c.threshold, "o"), (eq.get(name), "s")):
            if th is not None and th >= 0:
                ax.plot(max(rate[th], floor), rec[th], marker, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("false-match rate, copies vs other originals (0 drawn at the left edge)")
    ax.set_ylabel("recall, standard transforms")
    ax.set_title("Recall vs false matches (o: default/conventional, s: equal-FMR threshold)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    names.append(_save(fig, out / f"detection_roc{suffix}.png"))

    # 2. uploadscan: recall by group vs threshold, with the false-match rate.
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=90)
    ths = np.arange(0, 97)
    for name in (OURS, "PDQ (python-threatexchange)"):
        if name not in scores:
            continue
        for group, style in (("standard", "-"), ("crop", "--"), ("rotate-small", ":")):
            idx = [i for i, t in enumerate(transforms) if t.group == group]
            if idx:
                rec = [recall(scores[name].genuine[:, idx], int(th)) for th in ths]
                ax.plot(ths, rec, style, label=f"{name}: {group}", lw=1.4)
    rate = [(scores[OURS].impostor <= th).mean() for th in ths]
    ax.plot(ths, rate, "k-", lw=1, label="uploadscan false-match rate")
    ax.axvline(PDQ_THRESHOLD, color="grey", lw=0.8)
    ax.set_xlabel("PDQ threshold (bits of 256)")
    ax.set_ylabel("fraction")
    ax.set_title("PDQ recall by transform group vs threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    names.append(_save(fig, out / f"detection_threshold{suffix}.png"))

    # 3. uploadscan distance distributions.
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=90)
    bins = np.arange(0, 161, 4)
    s = scores[OURS]
    for group in GROUPS:
        idx = [i for i, t in enumerate(transforms) if t.group == group]
        if idx:
            ax.hist(s.genuine[:, idx].ravel(), bins, histtype="step", density=True, label=group)
    ax.hist(s.impostor, bins, histtype="stepfilled", alpha=0.3, density=True, label="impostor")
    ax.axvline(PDQ_THRESHOLD, color="grey", lw=0.8)
    ax.set_xlabel("uploadscan distance to the listed original (bits)")
    ax.set_ylabel("density")
    ax.set_title("Genuine copies by group vs impostor pairs")
    ax.legend(fontsize=7)
    names.append(_save(fig, out / f"detection_distances{suffix}.png"))
    plt.close("all")
    return names


def _save(fig: object, path: Path) -> str:
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path)  # type: ignore[attr-defined]
    return path.name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 photos, 1 strength per family")
    parser.add_argument("--images", action="append", default=[], help="extra originals (folder)")
    parser.add_argument("--photos", type=int, default=0, help="use N photos (spread over the list)")
    parser.add_argument("--transforms", nargs="*", default=(), help="only these transform names")
    parser.add_argument("--max-side", type=int, default=1600)
    parser.add_argument(
        "--hard-photos",
        type=int,
        default=12,
        help="photos on each side of the hard negatives (listed with an overlay / queried)",
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=RESULTS, help="where tables and plots go")
    parser.add_argument(
        "--cache", type=Path, help="JSON of hashes: reused if present, else written"
    )
    parser.add_argument(
        "--goals",
        action="store_true",
        help="only the crop-robust goal edits and one standard transform per family",
    )
    parser.add_argument(
        "--tag", default="", help="added to the result file names (a run on a subset)"
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
