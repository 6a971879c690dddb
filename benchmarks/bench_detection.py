"""Detection quality: recall under image transforms and false matches, against the peers.

    python benchmarks/bench_detection.py              # 69 photos x 76 transforms, < 10 minutes
    python benchmarks/bench_detection.py --quick      # 4 photos, one strength per family, < 1 min
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
false-match rate does not exceed uploadscan's at 31 ("equal FMR"). Tables go to stdout and to
benchmarks/results/detection*.md, plots to benchmarks/results/detection_*.png.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import find_data_dir, print_machine_info, print_table
from _transforms import GROUPS, Transform, select

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


@dataclass
class PhotoHashes:
    path: str
    list_hash: dict[str, bytes | None]  # contender -> the list entry (None: could not hash)
    original: dict[str, list[bytes]]  # contender -> query hashes of the original as an upload
    original_quality: dict[str, int | None]
    copies: dict[str, list[list[bytes]]]  # contender -> per transform, query hashes
    quality: dict[str, list[int | None]]
    seconds: float


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
    for transform in transforms:
        copy = transform.apply(image, seed)
        with Image.open(io.BytesIO(copy)) as decoded:
            rgb = decoded.convert("RGB")
        for name, (_, fn) in _WORKER.items():
            values, quality = fn(copy, rgb)
            result.copies[name].append(values)
            result.quality[name].append(quality)
    result.seconds = time.perf_counter() - started
    return result


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
        }
        for p in photos
    ]
    path.write_text(json.dumps(rows))


def load_hashes(path: Path, jobs: list[tuple[str, int, tuple[str, ...]]]) -> list[PhotoHashes]:
    """The cached photos that are a prefix of ``jobs`` (same photos, same transforms)."""

    def raw(values: list[str]) -> list[bytes]:
        return [bytes.fromhex(v) for v in values]

    out = []
    for row, (job_path, _, names) in zip(json.loads(path.read_text()), jobs, strict=False):
        if row["path"] != job_path or any(len(v) != len(names) for v in row["copies"].values()):
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
    if args.photos:
        step = max(1, len(paths) // args.photos)
        paths = paths[::step][: args.photos]
    transforms = select(args.quick, args.transforms)
    functions, missing = _hash_functions()
    contenders = {name: c for name, (c, _) in functions.items()}

    print("# Detection quality\n")
    print_machine_info([("workers", str(args.workers))])
    jobs = [(str(p), args.max_side, tuple(t.name for t in transforms)) for p in paths]
    photos: list[PhotoHashes] = []
    cached = 0
    if args.cache and args.cache.is_file():
        photos = load_hashes(args.cache, jobs)
    cached = len(photos)
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for photo in pool.imap(hash_photo, jobs[len(photos) :], chunksize=1):
            photos.append(photo)
            done = len(photos)
            if done % 10 == 0 or done == len(jobs):
                elapsed = time.perf_counter() - started
                print(f"  hashed {done}/{len(jobs)} photos, {elapsed:.0f} s", file=sys.stderr)
    if args.cache:
        save_hashes(args.cache, photos)
    hashed_s = time.perf_counter() - started
    scores = {name: score(name, c, photos) for name, c in contenders.items()}

    lines: list[str] = []
    out = Report(lines)
    out.header(photos, transforms, contenders, missing, hashed_s, data_dir, cached)
    eq = out.thresholds(scores, contenders)
    out.families(scores, contenders, transforms, eq)
    out.false_matches(scores, contenders, eq)
    out.curve_table(scores, contenders, transforms)
    out.targets(scores, transforms, photos)
    out.weaknesses(scores, contenders, eq, transforms, photos)
    per_transform = per_transform_table(scores, contenders, transforms)

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
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


def per_transform_table(
    scores: dict[str, Scores], contenders: dict[str, Contender], transforms: Sequence[Transform]
) -> str:
    lines: list[str] = []
    report = Report(lines)
    rows = []
    for i, t in enumerate(transforms):
        g = scores[OURS].genuine[:, i]
        rows.append(
            [t.name, t.group, int(np.median(g)), int(np.percentile(g, 90)), int(g.max())]
            + [pct(recall(scores[n].genuine[:, i], c.threshold)) for n, c in contenders.items()]
        )
    report.text(
        "# Detection recall per transform (default/conventional thresholds)",
        "Distances are uploadscan's (min over query variants, bits of 256; 257 = quality gate).",
    )
    report.table(["transform", "group", "median", "p90", "max", *contenders], rows)
    return "\n".join(lines)


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
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=RESULTS, help="where tables and plots go")
    parser.add_argument(
        "--cache", type=Path, help="JSON of hashes: reused if present, else written"
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
