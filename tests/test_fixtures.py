"""The bundled fixtures are what their manifest says, and the script remakes them.

- ``MANIFEST.md`` lists exactly the files in ``tests/fixtures`` with their sizes and sha256,
  and the whole set stays small;
- every still is a usable photo stand-in: ``pdqhash`` rates it at quality >= 80, the PDQ
  recorded at generation is what the reference computes today, and the scenes are far apart;
- each ``*.vpdq.txt`` (Meta's ``vpdq``) was made from the committed video, and the tests'
  own video reference (``pdqhash`` on PyAV's decode) reproduces it;
- running ``make_fixtures.py`` again gives the same pictures. Not necessarily the same bytes:
  encoders may change their output between versions (see the script's docstring), so stills
  are compared by pixels (PNG) or PDQ (JPEG), videos by their frames' PDQ.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import _media
import numpy as np
import pytest
from _media import (
    ANIMATED_GIF,
    CLIP_A,
    CLIP_B,
    FIXTURES,
    SCENES,
    fixture,
    make_fixtures_script,
    manifest,
    vpdq_file,
)
from _reference import hamming, reference_frames, reference_pdq
from PIL import Image, ImageSequence

from uploadscan._video_rule import compare_videos
from uploadscan.hashing._vpdq import read_vpdq

MAX_TOTAL_BYTES = 3 * 1024 * 1024
NOT_FIXTURES = {"MANIFEST.md", "make_fixtures.py", ".gitattributes", "__pycache__"}


def test_manifest_lists_every_file_with_its_size_and_digest() -> None:
    rows = manifest()
    present = {p.name for p in FIXTURES.iterdir()} - NOT_FIXTURES
    assert set(rows) == present
    for name, row in rows.items():
        data = (FIXTURES / name).read_bytes()
        assert row.size == len(data), name
        assert row.sha256 == hashlib.sha256(data).hexdigest(), name
        assert row.what and row.made_by.startswith("`python tests/fixtures/make_fixtures.py")
    assert sum(r.size for r in rows.values()) < MAX_TOTAL_BYTES
    assert "BSD-3-Clause" in (FIXTURES / "MANIFEST.md").read_text()


@pytest.mark.parametrize("name", SCENES)
def test_scenes_are_photo_stand_ins(name: str) -> None:
    row = manifest()[name]
    pdq, quality = reference_pdq(fixture(name))
    assert quality >= 80
    assert (pdq, str(quality)) == (row.pdq, row.quality)


def test_scenes_are_distinct_pictures() -> None:
    hashes = [reference_pdq(fixture(name))[0] for name in SCENES]
    assert min(hamming(a, b) for a, b in itertools.combinations(hashes, 2)) > 64


@pytest.mark.parametrize("video", [CLIP_A, CLIP_B])
def test_vpdq_files_come_from_the_committed_videos(video: str) -> None:
    row = manifest()[vpdq_file(video).name]
    assert row.source == hashlib.sha256(fixture(video).read_bytes()).hexdigest(), (
        f"{video} changed: run python tests/fixtures/make_fixtures.py --vpdq"
    )
    assert "vpdq" in row.made_by


@pytest.mark.parametrize("video", [CLIP_A, CLIP_B])
def test_reference_frames_reproduce_vpdq(video: str) -> None:
    """Like vPDQ's own reproduction check: every frame of quality >= 50 within 31 bits."""
    golden = read_vpdq(vpdq_file(video))
    ours = reference_frames(fixture(video))
    assert len(ours) == len(golden) >= 60
    close = 0
    for mine, theirs in zip(ours, golden, strict=True):
        assert mine.timestamp == pytest.approx(theirs.timestamp, abs=0.002)
        if theirs.quality >= 50:
            assert hamming(mine.pdq, theirs.pdq) <= 31, (video, theirs)
            close += hamming(mine.pdq, theirs.pdq) <= 8
    assert close >= 0.9 * len(golden)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fixtures")
    make_fixtures_script().make_media(out)
    return out


@pytest.mark.parametrize("name", [n for n in SCENES if n.endswith(".png")])
def test_regenerated_png_has_the_same_pixels(regenerated: Path, name: str) -> None:
    with Image.open(fixture(name)) as committed, Image.open(regenerated / name) as again:
        assert np.array_equal(np.asarray(committed), np.asarray(again))


@pytest.mark.parametrize("name", [n for n in SCENES if n.endswith(".jpg")])
def test_regenerated_jpeg_has_the_same_hash(regenerated: Path, name: str) -> None:
    committed, again = reference_pdq(fixture(name)), reference_pdq(regenerated / name)
    assert hamming(committed[0], again[0]) <= 4
    assert abs(committed[1] - again[1]) <= 5
    with Image.open(fixture(name)) as a, Image.open(regenerated / name) as b:
        assert (a.size, a.getexif().get(0x0112)) == (b.size, b.getexif().get(0x0112))


@pytest.mark.parametrize("video", [CLIP_A, CLIP_B])
def test_regenerated_video_has_the_same_frames(regenerated: Path, video: str) -> None:
    committed = read_vpdq(vpdq_file(video))
    again = reference_frames(regenerated / video)
    assert [f.timestamp for f in again] == pytest.approx([f.timestamp for f in committed])
    assert compare_videos(committed, again).listed_coverage >= 0.99
    assert compare_videos(again, committed).listed_coverage >= 0.99


def test_regenerated_animation_has_the_same_frames(regenerated: Path) -> None:
    def frames(path: Path) -> list[tuple[str, int | None]]:
        with Image.open(path) as image:
            return [
                (reference_pdq(f.convert("RGB"))[0], f.info.get("duration"))
                for f in ImageSequence.Iterator(image)
            ]

    committed, again = frames(fixture(ANIMATED_GIF)), frames(regenerated / ANIMATED_GIF)
    assert [d for _, d in committed] == [d for _, d in again]
    assert all(hamming(a, b) <= 4 for (a, _), (b, _) in zip(committed, again, strict=True))


def test_extended_corpus_follows_the_documented_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tests/_media.py: $UPLOADSCAN_TEST_DATA (``none``: without it), else ../shared/data
    # beside the project; a named directory without the corpus is an error, never a skip.
    corpus = tmp_path / "shared" / "data"
    corpus.mkdir(parents=True)
    monkeypatch.setattr(_media, "PROJECT_ROOT", tmp_path / "project")
    monkeypatch.delenv(_media.ENV, raising=False)
    assert _media.find_extended_data()[0] is None  # a fresh clone: nothing beside it
    (corpus / "MANIFEST.txt").write_text("")
    assert _media.find_extended_data()[0] == corpus
    for off in ("none", "NONE"):
        monkeypatch.setenv(_media.ENV, off)
        assert _media.find_extended_data()[0] is None
    monkeypatch.setenv(_media.ENV, str(corpus))
    assert _media.find_extended_data()[0] == corpus
    monkeypatch.setenv(_media.ENV, str(tmp_path))
    with pytest.raises(_media.ExtendedDataError, match=r"no MANIFEST\.txt"):
        _media.find_extended_data()


def test_pytest_without_the_corpus_skips_only_the_extended_tests(tmp_path: Path) -> None:
    tests = Path(__file__).resolve().parent

    def pytest_run(data: str, *selected: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *selected],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tests.parent,
            env={**os.environ, _media.ENV: data},
            check=False,
        )

    bundled = "tests/test_fixtures.py::test_manifest_lists_every_file_with_its_size_and_digest"
    extended = "tests/test_hash_file.py::test_imagehash_known_values"  # the corpus's photos
    out = pytest_run("none", bundled, extended)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 passed, 1 skipped" in out.stdout and "extended corpus absent" in out.stdout
    wrong = pytest_run(str(tmp_path), bundled)
    assert wrong.returncode == 4, wrong.stdout[-2000:]  # a usage error, nothing skipped
    assert "has no MANIFEST.txt" in wrong.stdout + wrong.stderr
