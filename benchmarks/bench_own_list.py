"""Own lists with crop-robust matching (the ``sift`` type): speed, memory and shortlist recall.

Targets (issue 16), all on one core:

- describe a 2 MP upload <= 30 ms (SIFT, 500 keypoints at 512 px);
- ``Scanner.scan()`` of a 2 MP upload against an own list of 10 k images, p50 <= 60 ms;
- ``scan()`` unchanged when no list holds descriptors (timed against a baseline revision of
  the library, default ``main``, in the same run);
- memory <= 32 KB per listed image at 10 k images, the mirror included, with the same copies
  found as through an uncompressed (exact) shortlist.

The list: real photos of ../shared/data (listed at 2 MP through ``Scanner.add_media``, their
edited copies are the hit uploads) among ``--entries`` filler images, each a distinct random
crop of a photo of the corpus or of /usr/share/backgrounds, described and stored as ``sift``
values. Peers in the same run: ORB (500 keypoints at the same size, the cheaper detector the issue
measured) and pdqhash on the same arrays for describing; the same scans with no descriptor
list, and the baseline revision, for scanning.

    python benchmarks/bench_own_list.py                   # 10 k listed images
    python benchmarks/bench_own_list.py --entries 2000    # a modest run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import find_data_dir, print_machine_info, print_table, summarize_ms

SIZE_2MP = (1732, 1155)
LISTED = [
    "kodak/kodim03.png",
    "kodak/kodim07.png",
    "kodak/kodim15.png",
    "kodak/kodim20.png",
    "kodak/kodim23.png",
    "scikit-image/astronaut.png",
    "scikit-image/coffee.png",
    "scikit-image/chelsea.png",
]
UNLISTED = ["kodak/kodim01.png", "kodak/kodim05.png", "kodak/kodim11.png", "kodak/kodim19.png"]
ROOT = Path(__file__).resolve().parent.parent


_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def reexec_with_one_thread() -> None:
    """Start again with the thread variables set: BLAS reads them when numpy loads."""
    if any(os.environ.get(k) != v for k, v in _ONE_THREAD.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_ONE_THREAD})


def one_thread() -> None:
    import cv2
    import faiss

    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def two_mp(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB").resize(SIZE_2MP, Image.Resampling.LANCZOS)


# ----------------------------------------------------------------------------- edits


def _crop(image: Image.Image, fraction: float, sides: str = "ltrb") -> Image.Image:
    w, h = image.size
    dx, dy = int(w * fraction), int(h * fraction)
    return image.crop(
        (
            dx if "l" in sides else 0,
            dy if "t" in sides else 0,
            w - dx if "r" in sides else w,
            h - dy if "b" in sides else h,
        )
    )


def _rotate(image: Image.Image, degrees: float) -> Image.Image:
    return image.rotate(degrees, Image.Resampling.BICUBIC, expand=True, fillcolor="black")


def _screenshot(image: Image.Image) -> Image.Image:
    w, h = image.size
    canvas = Image.new("RGB", (int(w / 0.6), int(h / 0.6) + 300), (246, 246, 246))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, 140), fill=(30, 80, 200))
    draw.text((40, 40), "FeedApp  12:41  Home  Explore", fill="white", font=_font(56))
    canvas.paste(image, ((canvas.width - w) // 2, 220))
    return canvas.resize((int(canvas.width * 0.6), int(canvas.height * 0.6)))


def _caption(image: Image.Image) -> Image.Image:
    w, h = image.size
    band = h // 6
    canvas = Image.new("RGB", (w, h + band), "white")
    canvas.paste(image, (0, band))
    ImageDraw.Draw(canvas).text(
        (20, band // 5), "THEY NEVER SHOW YOU THIS", fill="black", font=_font(band // 3)
    )
    return canvas


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    # "crop X%" loses X% of each dimension, half on each side (the detection benchmark's
    # definition); "15% left+top" cuts 15% off each of those two sides.
    "crop 4%": lambda im: _crop(im, 0.02),
    "crop 10%": lambda im: _crop(im, 0.05),
    "crop 20%": lambda im: _crop(im, 0.10),
    "crop 15% left+top": lambda im: _crop(im, 0.15, "lt"),
    "rotate 3": lambda im: _rotate(im, 3),
    "rotate 7": lambda im: _rotate(im, 7),
    "rotate -5 + crop 5%": lambda im: _crop(_rotate(im, -5), 0.05),
    "screenshot 60%": _screenshot,
    "caption band": _caption,
    "mirror": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


# ----------------------------------------------------------------------------- the filler


def filler_pool(data_dir: Path) -> list[Path]:
    skip = set(LISTED) | set(UNLISTED)
    pool = [p for p in sorted((data_dir / "kodak").glob("*.png")) if f"kodak/{p.name}" not in skip]
    pool += sorted(Path("/usr/share/backgrounds").rglob("*.jpg"))
    return pool


def _filler_values(args: tuple[str, int, int]) -> list[str]:
    """``count`` sift values of distinct random crops of one pool photo (a worker)."""
    import base64

    from uploadscan.hashing._sift_describe import describe

    path, count, seed = args
    one_thread()
    rng = np.random.default_rng(seed)
    with Image.open(path) as image:
        image.draft("L", (1600, 1600))
        grey = np.asarray(image.convert("L"))
    h, w = grey.shape
    out: list[str] = []
    for _ in range(count * 3):
        if len(out) == count:
            break
        cw, ch = int(w * rng.uniform(0.3, 0.8)), int(h * rng.uniform(0.3, 0.8))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        features = describe(np.ascontiguousarray(grey[y : y + ch, x : x + cw]))
        if len(features) < 64:
            continue  # a flat patch of sky: a listed image has texture
        out.append(base64.b64encode(features.to_bytes()).decode("ascii"))
    return out


def make_filler(data_dir: Path, entries: int, workers: int) -> list[str]:
    """``entries`` filler values: passes over the pool, with new crops each pass, until there
    are enough (flat pictures such as gradient wallpapers give few textured crops)."""
    pool = filler_pool(data_dir)
    values: list[str] = []
    with multiprocessing.get_context("spawn").Pool(workers) as procs:
        for attempt in range(8):
            per = -(-(entries - len(values)) // len(pool))
            jobs = [(str(p), per, attempt * len(pool) + i) for i, p in enumerate(pool)]
            values += [v for part in procs.imap(_filler_values, jobs) for v in part]
            if len(values) >= entries:
                break
    return values[:entries]


# ----------------------------------------------------------------------------- timing


class Timing:
    """Wall-clock and thread CPU seconds of each call. On a shared machine the wall clock
    includes waiting for a core; the thread's CPU time is what one core spends, and the
    ratios are taken on it (the work here runs on the calling thread: OpenCV, faiss and BLAS
    are held to one thread)."""

    HEADERS = ("what", "wall median ms", "wall p99 ms", "CPU median ms", "CPU p99 ms", "x", "n")

    def __init__(self, wall: Sequence[float] = (), cpu: Sequence[float] = ()) -> None:
        self.wall, self.cpu = list(wall), list(cpu)

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.thread_time()
        yield
        self.cpu.append(time.thread_time() - c0)
        self.wall.append(time.perf_counter() - t0)

    @property
    def cpu_median_ms(self) -> float:
        return statistics.median(self.cpu) * 1000

    def row(self, name: str, base_cpu_ms: float) -> list[object]:
        wall50, wall99 = summarize_ms(self.wall)
        cpu50, cpu99 = summarize_ms(self.cpu)
        return [name, wall50, wall99, cpu50, cpu99, cpu50 / base_cpu_ms, len(self.wall)]


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def describe_times(uploads: Sequence[bytes], repeat: int) -> list[list[object]]:
    import cv2
    import pdqhash

    from uploadscan.hashing._registry import registry
    from uploadscan.hashing._sift_describe import to_working_gray
    from uploadscan.media._image import decode_image
    from uploadscan.media._limits import DEFAULT_LIMITS

    sift = registry.get("sift")
    decoded = [
        decode_image(
            u,
            "image/jpeg",
            DEFAULT_LIMITS,
            full_resolution=False,
            started=time.monotonic(),
            min_long_side=sift.min_decode_side,
        )
        for u in uploads
    ]
    orb = cv2.ORB.create(nfeatures=500)
    rgb = [np.asarray(Image.open(io.BytesIO(u)).convert("RGB")) for u in uploads]

    def timed(fn: Callable[[int], object]) -> Timing:
        out = Timing()
        for _ in range(repeat):
            for i in range(len(uploads)):
                with out.measure():
                    fn(i)
        return out

    decode = timed(
        lambda i: decode_image(
            uploads[i],
            "image/jpeg",
            DEFAULT_LIMITS,
            full_resolution=False,
            started=time.monotonic(),
            min_long_side=sift.min_decode_side,
        )
    )
    ours = timed(lambda i: sift.hash_image(decoded[i], variants=False))

    def orb_describe(i: int) -> object:
        image = decoded[i].image
        grey = np.asarray(image if image.mode == "L" else image.convert("L"))
        return orb.detectAndCompute(to_working_gray(grey), None)

    peer_orb = timed(orb_describe)
    peer_pdq = timed(lambda i: pdqhash.compute(rgb[i]))
    base = ours.cpu_median_ms
    size = sift.min_decode_side
    return [
        samples.row(name, base)
        for name, samples in (
            (f"sift describe (uploadscan: grey, {size} px, SIFT 500, record)", ours),
            (f"JPEG decode before it (draft, long side >= {size})", decode),
            (f"peer: ORB 500 at {size} px, same decode", peer_orb),
            ("reference: pdqhash on the full RGB array", peer_pdq),
        )
    ]


def time_scans(home: Path, uploads: Sequence[bytes], rounds: int) -> Timing:
    import uploadscan

    out = Timing()
    with uploadscan.Scanner.open(home, audit=False) as scanner:
        for data in uploads[:2]:
            scanner.scan(data)
        for _ in range(rounds):
            for data in uploads:
                with out.measure():
                    scanner.scan(data)
    return out


_PLAIN_SCAN = r"""
import json, os, sys, time
import numpy as np
import uploadscan
from uploadscan.store._lists import EntryUpsert
home, files, rounds = sys.argv[1], sys.argv[2:-1], int(sys.argv[-1])
uploads = [open(f, "rb").read() for f in files]
rng = np.random.default_rng(0)
codes = [r.tobytes().hex() for r in rng.integers(0, 256, (10000, 32), dtype=np.uint8)]
with uploadscan.Scanner.open(home, audit=False) as s:
    s.add_list("ours", kind="block", source="local:")
    s.store.apply_batch("ours", [EntryUpsert("pdq", c) for c in codes], mark_synced=False)
wall, cpu = [], []
with uploadscan.Scanner.open(home, audit=False) as s:
    for u in uploads:
        s.scan(u)
    for _ in range(rounds):
        for u in uploads:
            t0, c0 = time.perf_counter(), time.thread_time()
            s.scan(u)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - t0)
print(json.dumps({"wall": wall, "cpu": cpu, "cv2": "cv2" in sys.modules}))
"""


def plain_scan(src: Path, files: Sequence[Path], rounds: int) -> tuple[Timing, bool]:
    """``scan()`` with an own list of 10 k PDQ hashes and no descriptors, with the library at
    ``src``, in a fresh process (so imports are what that revision imports)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(src)}
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _PLAIN_SCAN,
                str(Path(tmp) / "home"),
                *map(str, files),
                str(rounds),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    result = json.loads(out.stdout)
    return Timing(result["wall"], result["cpu"]), bool(result["cv2"])


def baseline_src(revision: str, into: Path) -> Path:
    """The library's ``src`` at ``revision`` (``git archive``; the work tree is not touched)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


# ----------------------------------------------------------------------------- recall


def shortlist_recall(
    home: Path,
    listed_ids: dict[int, str],
    queries: Sequence[tuple[str, str, bytes]],
    exact_photos: set[str],
) -> dict[str, dict[str, list[int]]]:
    """Copies found, per edit ([found, total]): blocked by ``scan()`` (PDQ first, else
    sift), and found by sift alone through the built index file (IVF-PQ for large lists)
    and, for the copies of ``exact_photos``, through an exact flat shortlist over the same
    values (a brute-force search: seconds per upload at 10 k listed images)."""
    import uploadscan
    from uploadscan.hashing._registry import registry
    from uploadscan.index._vectors import VectorIndex

    sift = registry.get("sift")
    found: dict[str, dict[str, list[int]]] = {"scan": {}, "index": {}, "exact": {}}

    def count(column: str, edit: str, hit: bool) -> None:
        row = found[column].setdefault(edit, [0, 0])
        row[0] += hit
        row[1] += 1

    manifest = json.loads((home / "index" / "manifest.json").read_text())
    built = VectorIndex.open(sift, home / "index" / manifest["types"]["sift"]["file"])
    with uploadscan.Scanner.open(home, audit=False) as scanner:
        ids, values = scanner.store.snapshot_values("sift")
        exact = VectorIndex.in_memory(sift, ids, values)
        del values
        for photo, edit, data in queries:
            verdict = scanner.scan(data)
            blocked = verdict.action is uploadscan.Action.BLOCK
            count("scan", edit, blocked and any(m.external_id == photo for m in verdict.matches))
            value = uploadscan.hash_file(data, extra=["sift"]).extra["sift"]
            for column, index in (("index", built), ("exact", exact)):
                if column == "exact" and photo not in exact_photos:
                    continue
                hits = sift.search(index, value, sift.default_shortlist)
                count(
                    column, edit, any(listed_ids.get(int(index.ids[h.row])) == photo for h in hits)
                )
    return found


# ----------------------------------------------------------------------------- margin


def _features(data: bytes) -> object:
    import uploadscan
    from uploadscan.hashing._sift import _parse

    return _parse(uploadscan.hash_file(data, extra=["sift"]).extra["sift"])


_THRESHOLD = 12  # SiftHashType.default_threshold, checked in main()


def _best_fits(query: object, listed: object) -> tuple[int, int]:
    """Inliers of the best fit that passes every check but the inlier count, and of the best
    fit of any kind (upright or mirrored)."""
    import dataclasses

    from uploadscan.hashing._sift_verify import DEFAULT_POLICY, measure

    policy = dataclasses.replace(DEFAULT_POLICY, min_inliers=3)
    passing = raw = 0
    for side in (query, query.mirror()):  # type: ignore[attr-defined]
        for fit in measure(side, listed, policy, min_matches=3):  # type: ignore[arg-type]
            raw = max(raw, fit.inliers)
            if fit.accepted(policy):
                passing = max(passing, fit.inliers)
    return passing, raw


def inlier_margin(
    listed_images: dict[str, Image.Image],
    queries: Sequence[tuple[str, str, bytes]],
    unlisted_images: Sequence[Image.Image],
) -> list[list[object]]:
    """Inlier counts of true and false pairs, straight from the verifier (the scanner reports
    pairs from 8 inliers up only): the listed photos against their edited copies, against
    the same edits of unlisted photos, and hard negatives, the same overlay (caption band,
    interface chrome) on a listed photo and on an unlisted one, the listed side being on
    the list too."""
    listed = {name: _features(jpeg(im)) for name, im in listed_images.items()}
    overlays = {"caption band": _caption, "screenshot 60%": _screenshot}
    overlaid = [
        _features(jpeg(fn(im))) for fn in overlays.values() for im in listed_images.values()
    ]
    true = [_best_fits(_features(data), listed[name])[0] for name, _, data in queries]
    edited = [_features(jpeg(fn(im))) for im in unlisted_images for fn in EDITS.values()]
    hard = [_features(jpeg(fn(im))) for im in unlisted_images for fn in overlays.values()]
    everything = [*listed.values(), *overlaid]
    false_edit = [_best_fits(q, entry) for q in edited for entry in everything]
    false_hard = [_best_fits(q, entry) for q in hard for entry in everything]

    def row(what: str, pairs: Sequence[tuple[int, int]]) -> list[object]:
        passing = max(p for p, _ in pairs)
        raw = max(r for _, r in pairs)
        return [what, len(pairs), passing, raw, "-"]

    return [
        [
            "edited copies vs their listed photo (true)",
            len(true),
            min(true),
            f"p5 {np.percentile(true, 5):.0f}, median {np.median(true):.0f}",
            f"{min(true) / _THRESHOLD:.1f}x the threshold",
        ],
        row("edited unlisted photos vs listed photos", false_edit),
        row("same overlay, different photo (hard negatives)", false_hard),
    ]


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000, help="filler images listed")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the uploads")
    parser.add_argument("--workers", type=int, default=2, help="processes describing filler")
    parser.add_argument("--baseline", default="main", help="revision for the unchanged check")
    parser.add_argument("--home", type=Path, help="data directory to build (default: temp)")
    parser.add_argument(
        "--exact-photos",
        type=int,
        default=0,
        help="compare with the exact shortlist on this many listed photos' copies (0: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="300 filler images, 1 round (run_all --quick)"
    )
    args = parser.parse_args()
    if args.quick:
        args.entries, args.rounds = min(args.entries, 300), 1
    reexec_with_one_thread()

    import cv2
    import faiss

    import uploadscan
    from uploadscan.store._lists import EntryUpsert

    one_thread()
    data_dir = find_data_dir()
    print("# Own list with crop-robust matching (sift)")
    print(f"command: python benchmarks/bench_own_list.py {' '.join(sys.argv[1:])}\n")
    print_machine_info(
        [
            ("load average", " ".join(f"{x:.2f}" for x in os.getloadavg())),
            ("cv2 / faiss", f"{cv2.__version__} / {faiss.__version__}"),
            (
                "timed threads",
                "1: cv2.setNumThreads(1), faiss.omp_set_num_threads(1), "
                "OMP/OPENBLAS/MKL_NUM_THREADS=1",
            ),
            ("filler workers", f"{args.workers} processes (describing only, not timed)"),
        ]
    )

    listed_images = {name: two_mp(data_dir / name) for name in LISTED}
    listed_bytes = {name: jpeg(im) for name, im in listed_images.items()}
    unlisted = [jpeg(two_mp(data_dir / name)) for name in UNLISTED]
    queries = [
        (name, edit, jpeg(fn(im)))
        for name, im in listed_images.items()
        for edit, fn in EDITS.items()
    ]

    print("## Describe a 2 MP upload, one thread")
    rows = describe_times(list(listed_bytes.values()) + unlisted, args.rounds)
    print_table([*Timing.HEADERS[:-2], "x sift (CPU)", "n"], rows)

    tmp = tempfile.TemporaryDirectory()
    home = args.home or Path(tmp.name) / "home"
    started = time.perf_counter()
    filler = make_filler(data_dir, args.entries, args.workers)
    print(
        f"filler: {len(filler)} images described in {time.perf_counter() - started:.0f} s "
        f"({len(filler_pool(data_dir))} source photos, random crops of 30-80% a side)"
    )
    with uploadscan.Scanner.open(home, audit=False) as scanner:
        scanner.add_list("ours", kind="block", source="local:")
        for start in range(0, len(filler), 500):
            batch = [
                EntryUpsert("sift", v, (), f"filler-{start + i}")
                for i, v in enumerate(filler[start : start + 500])
            ]
            scanner.store.apply_batch("ours", batch, mark_synced=False)
        listed_ids: dict[int, str] = {}
        for name, data in listed_bytes.items():
            scanner.add_media("ours", data, entry_id=name)
        for entry in scanner.store.list_entries("ours"):
            if entry.hash_type == "sift" and not (entry.external_id or "").startswith("filler-"):
                listed_ids[entry.id] = str(entry.external_id)
    del filler
    before = rss_kb()
    started = time.perf_counter()
    with uploadscan.Scanner.open(home, audit=False) as scanner:
        scanner.scan(unlisted[0])
    print(f"index built in {time.perf_counter() - started:.0f} s (first open)\n")

    print("## Memory per listed image (mirror included: nothing is stored or indexed for it)")
    manifest = json.loads((home / "index" / "manifest.json").read_text())
    info = manifest["types"]["sift"]
    count = int(info["count"])
    from uploadscan.hashing._registry import registry
    from uploadscan.index._vectors import VectorIndex

    index = VectorIndex.open(registry.get("sift"), home / "index" / info["file"])
    resident = int(faiss.serialize_index(index._index).nbytes)
    file_bytes = (home / "index" / info["file"]).stat().st_size
    store_bytes = sum(p.stat().st_size for p in home.glob("*.sqlite*"))
    print_table(
        ["what", "bytes per listed image", "total MB", "where"],
        [
            [
                f"faiss shortlist ({type(index._index).__name__})",
                resident / count,
                resident / 1e6,
                "in memory (deserialised)",
            ],
            [
                "vector index file (owners, ids, records)",
                file_bytes / count,
                file_bytes / 1e6,
                "memory-mapped; a scan touches its 3-8 candidates' records",
            ],
            ["SQLite store (all lists' values)", store_bytes / count, store_bytes / 1e6, "disk"],
        ],
    )
    print(
        f"  {count} listed images, {index.vector_count} keypoint vectors "
        f"({index.vector_count / count:.0f} per image)\n"
    )
    del index

    print("## scan() of a 2 MP upload against the own list, one thread")
    hits = [data for _, _, data in queries]
    t_hits = time_scans(home, hits, args.rounds)
    t_miss = time_scans(home, unlisted, args.rounds * 3)
    after = rss_kb()
    files_dir = Path(tmp.name) / "uploads"
    files_dir.mkdir(exist_ok=True)
    files = []
    for i, data in enumerate(list(listed_bytes.values()) + unlisted):
        path = files_dir / f"{i}.jpg"
        path.write_bytes(data)
        files.append(path)
    plain_now, cv2_now = plain_scan(ROOT / "src", files, args.rounds * 2)
    with tempfile.TemporaryDirectory() as base_tmp:
        plain_before, cv2_before = plain_scan(
            baseline_src(args.baseline, Path(base_tmp)), files, args.rounds * 2
        )
    base = plain_before.cpu_median_ms
    rows = [
        samples.row(name, base)
        for name, samples in (
            (f"edited copies of listed photos (hits), {count} images listed", t_hits),
            (f"unlisted photos (misses), {count} images listed", t_miss),
            ("no descriptor list: 10 k PDQ own list, this revision", plain_now),
            (f"no descriptor list: 10 k PDQ own list, {args.baseline}", plain_before),
        )
    ]
    print_table([*Timing.HEADERS[:-2], f"x {args.baseline} plain (CPU)", "n"], rows)
    print(
        f"  cv2 imported by a scanner with no descriptor list: this revision {cv2_now}, "
        f"{args.baseline} {cv2_before}"
    )
    print(
        f"  resident memory of this process: {before / 1024:.0f} MB before the scanner, "
        f"{after / 1024:.0f} MB after the timed scans\n"
    )

    print("## Copies found: scan(), and sift through the built shortlist vs an exact one")
    exact_photos = set(LISTED[: args.exact_photos or len(LISTED)])
    found = shortlist_recall(home, listed_ids, queries, exact_photos)
    columns = ("scan", "index", "exact")
    rows = [
        [edit, *(f"{found[c][edit][0]}/{found[c][edit][1]}" for c in columns if edit in found[c])]
        for edit in EDITS
    ]
    totals = [[sum(v[i] for v in found[c].values()) for i in (0, 1)] for c in columns]
    rows.append(["all", *(f"{t[0]}/{t[1]}" for t in totals)])
    print_table(
        [
            "edit",
            "scan() blocks it (PDQ first, else sift)",
            "sift, built index file",
            f"sift, exact flat shortlist ({len(exact_photos)} photos' copies)",
        ],
        rows,
    )
    false = 0
    with uploadscan.Scanner.open(home, audit=False) as scanner:
        for data in unlisted:
            false += any(m.hash_type == "sift" for m in scanner.scan(data).matches)
    print(f"  unlisted photos matched by sift: {false} of {len(unlisted)}\n")

    print("## Inlier margin (the verifier's own counts, every pair)")
    assert registry.get("sift").default_threshold == _THRESHOLD
    unlisted_images = [two_mp(data_dir / name) for name in UNLISTED]
    rows = inlier_margin(listed_images, queries, unlisted_images)
    print_table(
        [
            "pairs",
            "n",
            "inliers, other checks passed (true: fewest, false: most)",
            "false: most inliers of any fit",
            "true / threshold",
        ],
        rows,
    )
    best_false = max(int(str(r[2])) for r in rows[1:])
    threshold = _THRESHOLD
    print(
        f"  default threshold {threshold} inliers; the best false pair that passes the scale, "
        f"coverage and centre checks has {best_false}: margin "
        + (f"{threshold / best_false:.1f}x" if best_false else f"> {threshold / 2:.0f}x (none)")
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
