"""Where the tests' media comes from: the bundled fixtures and the extended corpus.

- ``tests/fixtures/``: small media drawn from seeds by ``tests/fixtures/make_fixtures.py`` and
  committed with a manifest (``MANIFEST.md``: what, how, licence, size). Always present; every
  core behaviour (hashing, PDQ against ``pdqhash``, video hashing against vPDQ, the scanner
  end to end, the CLI, the examples) is tested on them, so a fresh clone tests the real thing.
- The extended corpus: real photos, videos and published reference hashes from upstream
  projects (``../shared/data`` beside the project, or ``$UPLOADSCAN_TEST_DATA``). It is never
  copied into the project. Tests that need it are marked ``extended`` (taking the ``data_dir``
  fixture marks a test by itself) and are skipped, with the reason, when it is absent.

``UPLOADSCAN_TEST_DATA``:

- unset: ``../shared/data`` if it holds ``MANIFEST.txt``, else no extended corpus;
- ``none``: no extended corpus, as on a fresh clone (CI's second pass);
- a directory: that corpus; a directory without ``MANIFEST.txt`` is an error, so that a typo
  cannot quietly turn the extended tests into skips.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
ENV = "UPLOADSCAN_TEST_DATA"
NO_DATA = "none"

#: Still photos-like scenes (each its own picture; none is an edited copy of another).
SCENES = [
    "scene_a.jpg",
    "scene_b.jpg",
    "scene_c.png",
    "scene_d.jpg",
    "scene_e.jpg",
    "scene_f.png",
    "scene_large.jpg",
    "scene_exif6.jpg",
]
#: H.264 MP4 (with an AAC track, keyframes every 2 s) and VP9 WebM; and their vPDQ files.
CLIP_A = "clip_a.mp4"
CLIP_B = "clip_b.webm"
ANIMATED_GIF = "anim.gif"


def fixture(name: str) -> Path:
    """A bundled fixture by file name."""
    path = FIXTURES / name
    if not path.is_file():
        raise FileNotFoundError(f"no fixture {name} in {FIXTURES} (see MANIFEST.md there)")
    return path


def vpdq_file(video: str) -> Path:
    """The committed vPDQ file of a fixture video (made by Meta's ``vpdq``)."""
    return fixture(f"{video}.vpdq.txt")


def make_fixtures_script() -> ModuleType:
    """``tests/fixtures/make_fixtures.py``, imported: it makes fixtures and reads the manifest."""
    if "make_fixtures" in sys.modules:
        return sys.modules["make_fixtures"]
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_fixtures"] = module
    spec.loader.exec_module(module)
    return module


@cache
def manifest() -> dict[str, Any]:
    """The rows of ``tests/fixtures/MANIFEST.md`` by file name (``.pdq``, ``.sha256``...)."""
    rows: dict[str, Any] = make_fixtures_script().read_manifest(FIXTURES)
    return rows


class ExtendedDataError(RuntimeError):
    """``UPLOADSCAN_TEST_DATA`` names a directory that is not the extended corpus."""


def find_extended_data() -> tuple[Path | None, str]:
    """(the extended corpus or None, why) following the rules in this module's docstring."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() == NO_DATA:
        return None, f"{ENV}={env}"
    if env:
        path = Path(env)
        if not (path / "MANIFEST.txt").is_file():
            raise ExtendedDataError(
                f"{ENV}={env} has no MANIFEST.txt: point it at the extended test corpus, "
                f"or set {ENV}={NO_DATA} to run without it"
            )
        return path, f"{ENV}={env}"
    default = PROJECT_ROOT.parent / "shared" / "data"
    if (default / "MANIFEST.txt").is_file():
        return default, str(default)
    return None, f"no {default} and {ENV} unset"


def media(request: pytest.FixtureRequest, name: str) -> Path:
    """``fixtures/NAME`` from the bundled fixtures; any other name from the extended corpus.

    For tests parametrized over both: the extended names carry ``marks=pytest.mark.extended``
    (skipped without the corpus), the bundled ones always run.
    """
    if name.startswith("fixtures/"):
        return fixture(name.removeprefix("fixtures/"))
    data_dir: Path = request.getfixturevalue("data_dir")
    return data_dir / name


def both(bundled: list[str], extended: list[str]) -> list[Any]:
    """Parameters for ``media``: the bundled fixture names, then the extended corpus's, marked."""
    return [
        *(pytest.param(f"fixtures/{name}", id=name) for name in bundled),
        *(pytest.param(name, marks=pytest.mark.extended, id=name) for name in extended),
    ]
