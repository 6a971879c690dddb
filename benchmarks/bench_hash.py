"""Image hashing speed and PDQ fidelity, against the peers, in one run.

    python benchmarks/bench_hash.py            # ~2-3 minutes
    python benchmarks/bench_hash.py --quick    # smoke run, < 30 s

Per photo (about 0.3, 2 and 12 MP): Pillow full decode, Pillow draft (reduced-size) decode,
``uploadscan`` hash_file (PDQ + MD5 + SHA-256), python-threatexchange's PdqSignal,
perception's PDQ hasher and imagehash's phash when installed. Then the distribution of Hamming
distances between our PDQ and the reference (pdqhash on the full-resolution decode) over every
still image in the shared data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    find_data_dir,
    print_machine_info,
    print_table,
    summarize_ms,
    time_calls,
)

from uploadscan.hashing._hash_file import hash_file

PHOTOS = {
    "0.3 MP": "scikit-learn/china.jpg",  # 640 x 427
    "2 MP": "exif-orientation-examples/Landscape_0.jpg",  # 1800 x 1200
    "12 MP": "threatexchange/pdq/data/reg-test-input/exif-rotn/exif-rotn-1.jpg",  # 4032 x 3024
}


def full_decode(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def draft_decode(path: Path) -> None:
    with Image.open(path) as image:
        image.draft("RGB", (image.size[0] // 8, image.size[1] // 8))
        image.load()


def peers() -> dict[str, Callable[[Path], object] | str]:
    out: dict[str, Callable[[Path], object] | str] = {}
    try:
        from threatexchange.signal_type.pdq.signal import PdqSignal

        out["python-threatexchange PDQ"] = PdqSignal.hash_from_file
    except ImportError as exc:
        out["python-threatexchange PDQ"] = f"missing ({exc})"
    try:
        from perception.hashers import PDQHash

        hasher = PDQHash()
        out["perception PDQHash"] = lambda p: hasher.compute(str(p))
    except ImportError as exc:
        out["perception PDQHash"] = f"missing ({exc})"
    try:
        import imagehash

        def phash(path: Path) -> object:
            with Image.open(path) as image:
                return imagehash.phash(image)

        out["imagehash phash"] = phash
    except ImportError as exc:
        out["imagehash phash"] = f"missing ({exc})"
    return out


def reference_hex(path: Path) -> tuple[str, int]:
    with Image.open(path) as image:
        bits, quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def speed(data_dir: Path, repeat: int, budget: float) -> None:
    contenders: dict[str, Callable[[Path], object] | str] = {
        "Pillow full decode": full_decode,
        "Pillow draft decode (1/8)": draft_decode,
        "uploadscan hash_file": hash_file,
        **peers(),
    }
    print("## Speed (ms per image; ratio = contender median / uploadscan median)")
    for label, rel in PHOTOS.items():
        path = data_dir / rel
        with Image.open(path) as image:
            size = image.size
        print(f"### {label}: {rel} ({size[0]}x{size[1]}, {path.stat().st_size // 1024} KB)")
        results: dict[str, tuple[float, float] | str] = {}
        for name, fn in contenders.items():
            if isinstance(fn, str):
                results[name] = fn
                continue
            samples = time_calls(lambda fn=fn, path=path: fn(path), repeat=repeat, budget_s=budget)
            results[name] = summarize_ms(samples)
        ours = results["uploadscan hash_file"]
        assert not isinstance(ours, str)
        rows = []
        for name, value in results.items():
            if isinstance(value, str):
                rows.append((name, "-", "-", value))
            else:
                rows.append((name, value[0], value[1], f"{value[0] / ours[0]:.2f}x"))
        print_table(["contender", "median ms", "p99 ms", "vs uploadscan"], rows)


def fidelity(data_dir: Path, limit: int | None) -> None:
    from uploadscan import UploadScanError

    paths = []
    for line in (data_dir / "MANIFEST.txt").read_text().splitlines():
        parts = [p.strip() for p in line.split(" | ")]
        if len(parts) > 2 and parts[2] == "image":
            paths.append(data_dir / parts[0])
    if limit is not None:
        paths = paths[:limit]
    distances, low_quality, skipped = [], [], []
    for path in paths:
        try:
            ours = hash_file(path)
        except UploadScanError as exc:
            skipped.append(f"{path.name}: {type(exc).__name__}")
            continue
        if ours.pdq is None:  # an animated image: hashed frame by frame, not comparable here
            skipped.append(f"{path.name}: animated ({len(ours.frames)} frame hashes)")
            continue
        expected, quality = reference_hex(path)
        (distances if quality >= 80 else low_quality).append(hamming(ours.pdq, expected))
    print("## PDQ fidelity vs reference (pdqhash on the full-resolution Pillow decode)")
    d = np.array(distances)
    rows = [
        ("quality >= 80", len(d), int(d.max()), float(np.median(d)), float(d.mean()),
         int(np.percentile(d, 90))),
    ]  # fmt: skip
    if low_quality:
        q = np.array(low_quality)
        rows.append(("quality < 80", len(q), int(q.max()), float(np.median(q)), float(q.mean()),
                     int(np.percentile(q, 90))))  # fmt: skip
    print_table(["images", "n", "max bits", "median", "mean", "p90"], rows)
    histogram = np.bincount(d)
    print("  distance histogram (q>=80): " + ", ".join(
        f"{bits}:{count}" for bits, count in enumerate(histogram) if count))  # fmt: skip
    print(f"  not hashed (typed errors): {'; '.join(skipped) or 'none'}\n")


def synthetic_12mp(data_dir: Path, tmp: Path) -> Path | None:
    """Only if the data lacks a 12 MP photo: upscale one with Lanczos and save JPEG q90."""
    path = data_dir / PHOTOS["12 MP"]
    if path.exists():
        return None
    source = data_dir / PHOTOS["2 MP"]
    with Image.open(source) as image:
        big = image.convert("RGB").resize((4000, 3000), Image.Resampling.LANCZOS)
    out = tmp / "synthetic-12mp.jpg"
    big.save(out, "JPEG", quality=90)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, < 30 s")
    args = parser.parse_args()
    data_dir = find_data_dir()
    print_machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        made = synthetic_12mp(data_dir, Path(tmp))
        if made is not None:
            PHOTOS["12 MP"] = str(made)
            print(f"NOTE: no 12 MP photo in the data; built {made} (Lanczos upscale, JPEG q90)\n")
        else:
            print("12 MP photo is a real camera JPEG from the data (no synthetic upscale)\n")
        if args.quick:
            speed(data_dir, repeat=5, budget=2.0)
            fidelity(data_dir, limit=25)
        else:
            speed(data_dir, repeat=40, budget=12.0)
            fidelity(data_dir, limit=None)


if __name__ == "__main__":
    main()
