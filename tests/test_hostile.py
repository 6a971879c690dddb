"""Hostile uploads: every file of the generated corpus gets a typed error or a correct hash,
in bounded time and memory.

The corpus (``tests/hostile/make_corpus.py``: truncations, decompression bombs, videos that
declare huge frames or durations, malformed MP4 boxes, endless animations, polyglots, lying
extensions, 1-pixel files, unusual modes, garbage EXIF) is generated into ``tmp_path`` and
hashed in a worker subprocess whose address space is capped at 1.5 GB (``RLIMIT_AS``). The
worker resets the kernel's peak-RSS counter before each input and reports it after, so each
input is held to 500 MB and 2 s on its own. ``Limits.max_decode_seconds`` is set to 1 s: what
is under test is that the budget is honoured, not how fast this machine decodes. Files in
``tests/hostile/regressions/`` (small inputs found by fuzzing) are replayed the same way.
The corpus is made from generated seeds and bundled fixtures; with the extended corpus, cuts of
small real files are checked too.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pdqhash
import pytest
from PIL import Image

import uploadscan

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fuzz"))
sys.path.insert(0, str(HERE / "hostile"))

import fuzzlib  # noqa: E402
import make_corpus  # noqa: E402

MAX_SECONDS = 2.0
MAX_PEAK_MB = 500.0
ADDRESS_SPACE = 1536 << 20
WORKER_CONFIG: dict[str, Any] = {
    "limits": {"max_decode_seconds": 1.0},  # everything else: DEFAULT_LIMITS
    "scan": False,
    "address_space": ADDRESS_SPACE,
}
REGRESSIONS = HERE / "hostile" / "regressions"


def _run_all(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Hash every file in one worker (restarted only after a hang or a crash)."""
    replies: dict[str, dict[str, Any]] = {}
    stats = fuzzlib.Stats()
    with fuzzlib.Runner(
        timeout=10 * MAX_SECONDS, peak_limit_mb=MAX_PEAK_MB, config=WORKER_CONFIG
    ) as runner:
        for path in paths:
            runner.run(path.read_bytes(), stats)
            reply = runner.last_reply
            if reply is None:  # hang or crash: the finding says which
                finding = stats.findings[-1]
                reply = {"outcome": finding.kind, "bug": finding.detail, "seconds": 1e9}
            replies[path.name] = reply
    return replies


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the garbage EXIF it is asked to save
        make_corpus.build(out)
    return out


@pytest.fixture(scope="module")
def manifest(corpus: Path) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads((corpus / "manifest.json").read_text())
    return data


@pytest.fixture(scope="module")
def replies(corpus: Path, manifest: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return _run_all([corpus / name for name in sorted(manifest)])


def test_corpus_covers_every_category(manifest: dict[str, dict[str, Any]]) -> None:
    categories = {info["category"] for info in manifest.values()}
    assert categories == {
        "truncated",
        "bomb",
        "video-bomb",
        "mp4-atoms",
        "animation",
        "polyglot",
        "lying-ext",
        "tiny",
        "modes",
        "exif",
    }
    assert len(manifest) > 1000


def test_every_input_is_a_typed_error_or_a_hash_in_bounded_time_and_memory(
    manifest: dict[str, dict[str, Any]], replies: dict[str, dict[str, Any]]
) -> None:
    assert any(name.startswith("truncated--fixture-") for name in manifest)
    problems = _problems(manifest, replies)
    assert not problems, "\n".join(problems)


@pytest.mark.extended
def test_cut_real_files_are_typed_errors_or_hashes(tmp_path: Path, data_dir: Path) -> None:
    corpus = make_corpus.Corpus(tmp_path)
    make_corpus.truncated(corpus, make_corpus.real_seeds(data_dir))
    replies = _run_all([tmp_path / name for name in sorted(corpus.manifest)])
    problems = _problems(corpus.manifest, replies)
    assert not problems, "\n".join(problems)


def _problems(manifest: dict[str, dict[str, Any]], replies: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for name, info in sorted(manifest.items()):
        reply = replies[name]
        outcome = reply["outcome"]
        if reply.get("bug"):
            problems.append(f"{name}: {outcome}: {reply['bug'].strip().splitlines()[-1]}")
            continue
        if reply["seconds"] > MAX_SECONDS:
            problems.append(f"{name}: took {reply['seconds']:.2f} s")
        if reply["peak_mb"] > MAX_PEAK_MB:
            problems.append(f"{name}: peak RSS {reply['peak_mb']:.0f} MB")
        expect = info["expect"]
        if expect == "error" and not outcome.startswith("error:"):
            problems.append(f"{name}: expected an error, got {outcome}")
        elif expect == "error" and outcome.split(":", 1)[1] not in info["error_types"]:
            problems.append(f"{name}: expected one of {info['error_types']}, got {outcome}")
        elif expect in ("hash", "bytes") and not outcome.startswith("ok:"):
            problems.append(f"{name}: expected a hash, got {outcome}: {reply.get('error')}")
        elif expect == "bytes" and reply.get("pdq") is not None:
            problems.append(f"{name}: not media, yet a PDQ hash")
        if "media_type" in info and reply.get("media_type") != info["media_type"]:
            problems.append(f"{name}: media type {reply.get('media_type')}")
    return problems


def test_bombs_fail_on_the_declared_size_before_decoding(
    manifest: dict[str, dict[str, Any]], replies: dict[str, dict[str, Any]]
) -> None:
    """Pixel bombs are refused from the header: cheap, whatever they declare."""
    for name, info in manifest.items():
        if info["category"] == "bomb" and info.get("error_types") == ["MediaTooLargeError"]:
            reply = replies[name]
            assert reply["outcome"] == "error:MediaTooLargeError", name
            assert "pixels" in reply["error"], (name, reply["error"])
            assert reply["peak_mb"] < 150, (name, reply["peak_mb"])


def test_pdq_of_unusual_modes_matches_the_reference(
    corpus: Path, manifest: dict[str, dict[str, Any]], replies: dict[str, dict[str, Any]]
) -> None:
    """CMYK, 16-bit, palette, alpha, 1-bit, float: our PDQ is the reference's on the full
    decode (``pdqhash`` on Pillow's RGB conversion) within the specification's 10 bits."""
    checked = 0
    for name, info in manifest.items():
        if not info.get("pdq_reference"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the garbage-EXIF files make Pillow warn
            with Image.open(corpus / name) as image:
                rgb = _reference_rgb(image)
        bits, quality = pdqhash.compute(rgb)
        if quality < 80:
            continue
        expected = int("".join(str(int(b)) for b in bits), 2)
        ours = int(replies[name]["pdq"], 16)
        assert (expected ^ ours).bit_count() <= 10, name
        checked += 1
    assert checked >= 15


def _reference_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I", "F") or image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if image.mode != "F" and array.max() > 255 else 1.0
        grey = np.clip(array * scale, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.dstack([grey] * 3))
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def test_lying_extensions_hash_by_content(
    corpus: Path, manifest: dict[str, dict[str, Any]]
) -> None:
    """The name says .png, .jpg or .txt; the hashes are those of what the bytes are."""
    for name, info in manifest.items():
        if "same_as" not in info:
            continue
        lying = uploadscan.hash_file(corpus / name)
        truthful = uploadscan.hash_file(corpus / info["same_as"])
        assert lying == truthful, name
        assert lying.sha256 == hashlib.sha256((corpus / name).read_bytes()).hexdigest()


def test_fuzzing_regressions_stay_fixed() -> None:
    paths = sorted(p for p in REGRESSIONS.iterdir() if not p.name.startswith("."))
    assert paths, "the regression directory must not be empty"
    for path in paths:
        assert path.stat().st_size < 20_000, path
    replies = _run_all(paths)
    for path in paths:
        reply = replies[path.name]
        assert not reply.get("bug"), (path.name, reply)
        assert reply["seconds"] < MAX_SECONDS, path.name
        assert reply["peak_mb"] < MAX_PEAK_MB, path.name
