"""A hash type registered from outside the package hashes, syncs and matches end to end.

The toy type lives here, in a test module, and touches no uploadscan module: it is one class
and one ``register()`` call. It then has to pass the plug-in contract, be computed by
``hash_file`` and by ``Scanner.scan`` (only once a list holds it), sync from a list file
through the real sync code, be looked up in a real index file, honour its own per-list
threshold setting, and come back in the verdict's matches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageFilter

import uploadscan
from uploadscan import Action, Scanner, hashtypes
from uploadscan.hashtypes import (
    Closeness,
    DecodedImage,
    HashType,
    ImageHash,
    IndexKind,
    VectorHit,
    VectorMetric,
    VectorSearch,
)
from uploadscan.store._lists import EntryUpsert
from uploadscan.testing import check_hash_type

NAME = "toy_mean64"


class ToyMeanHash(HashType):
    """64 bits: the 8x8 block means of the luma plane, each compared with their median."""

    name = NAME
    bits = 64
    index_kind = IndexKind.HAMMING
    default_threshold = 10
    threshold_setting = "toy_mean64_threshold"
    description = "a toy 8x8 mean hash registered by a test"
    example_values: ClassVar[tuple[str, ...]] = ("f0f0f0f00f0f0f0f", "0123456789abcdef")

    def hash_image(self, image: DecodedImage, *, variants: bool) -> ImageHash:
        luma = image.luma()
        rows = np.array_split(np.arange(luma.shape[0]), 8)
        cols = np.array_split(np.arange(luma.shape[1]), 8)
        means = np.array([[luma[np.ix_(r, c)].mean() for c in cols] for r in rows])
        bits = (means > np.median(means)).astype(np.uint8).ravel()
        return ImageHash(np.packbits(bits).tobytes().hex())


@pytest.fixture(scope="module")
def toy() -> HashType:
    if NAME not in hashtypes.names():
        hashtypes.register(ToyMeanHash())
    return hashtypes.get(NAME)


def _photo(tmp_path: Path, seed: int, name: str) -> Path:
    """A structured random picture (smooth blobs), so the toy hash has something to see."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC)
    path = tmp_path / name
    image.save(path, quality=92)
    return path


def test_the_toy_type_passes_the_contract(toy: HashType) -> None:
    check_hash_type(toy)


def test_a_registered_type_hashes_syncs_and_matches(toy: HashType, tmp_path: Path) -> None:
    listed = _photo(tmp_path, 1, "listed.jpg")
    other = _photo(tmp_path, 2, "other.jpg")
    value = uploadscan.hash_file(listed, extra=[NAME]).extra[NAME]
    assert value == uploadscan.hash_file(listed, extra=[NAME]).extra[NAME]  # deterministic

    # An edited copy: smaller, blurred, recompressed, with a black sticker over two of the 64
    # blocks. Its toy hash is near, not equal.
    copy = tmp_path / "copy.jpg"
    with Image.open(listed) as image:
        edited = image.resize((320, 240)).filter(ImageFilter.GaussianBlur(1.5))
        edited.paste((0, 0, 0), (0, 0, 80, 30))
        edited.save(copy, quality=60)
    copy_value = uploadscan.hash_file(copy, extra=[NAME]).extra[NAME]
    assert 0 < toy.compare(value, copy_value) <= toy.default_threshold

    list_file = tmp_path / "toy-list.txt"
    list_file.write_text(f"{NAME} {value}\n")  # python-threatexchange's "type value" lines
    with Scanner.open(tmp_path / "home") as scanner:
        assert scanner.scan(copy).action is Action.ALLOW  # no list yet: nothing to match
        scanner.add_list("toys", kind="block", source=str(list_file))
        [result] = scanner.sync()
        assert result.ok
        assert scanner.lists()[0].counts_by_type == {NAME: 1}

        verdict = scanner.scan(copy)
        assert verdict.action is Action.BLOCK
        [match] = verdict.matches
        assert (match.list_name, match.hash_type, match.value) == ("toys", NAME, value)
        assert match.distance == toy.compare(value, copy_value)
        assert verdict.hashes[NAME] == (copy_value,)  # computed because a list holds it
        assert scanner.scan(other).action is Action.ALLOW

        # The type's own per-list setting, validated and honoured like a built-in one.
        with pytest.raises(uploadscan.ConfigError):
            scanner.store.update_settings(
                "toys", uploadscan.ListSettings.from_dict({"toy_mean64_threshold": 65})
            )
        strict = uploadscan.ListSettings.from_dict({"toy_mean64_threshold": 0})
        scanner.store.update_settings("toys", strict)
        assert scanner.scan(copy).action is Action.ALLOW
        assert scanner.lookup({NAME: value}).action is Action.BLOCK


# ----------------------------------------------------------------------------- a vector type

VNAME = "toy_grid8"


class ToyGridVector(HashType):
    """8 floats: the mean luma of a 2x4 grid, as a unit vector; matched by cosine."""

    name = VNAME
    bits = 256  # 8 float32
    index_kind = IndexKind.VECTOR
    closeness = Closeness.SCORE
    default_threshold = 0.999
    threshold_setting = "toy_grid8_min"
    shortlist_setting = "toy_grid8_shortlist"
    default_shortlist = 0.99
    vector_dim = 8
    vector_metric = VectorMetric.INNER_PRODUCT
    example_values: ClassVar[tuple[str, ...]] = (
        np.full(8, 0.3535534, np.float32).tobytes().hex(),
        np.arange(1, 9, dtype=np.float32).tobytes().hex(),
    )

    def compare(self, a: str, b: str) -> float:
        x, y = (np.frombuffer(bytes.fromhex(self.validate(v)), np.float32) for v in (a, b))
        return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))

    def vectors(self, code: bytes) -> npt.NDArray[np.generic]:
        vector = np.frombuffer(code, np.float32).reshape(1, 8)
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def search(self, index: VectorSearch, query: str, shortlist: float) -> list[VectorHit]:
        _, owners, _ = index.range(self.vectors(bytes.fromhex(query)), shortlist)
        hits = []
        for row in sorted(set(owners.tolist())):
            score = self.compare(query, index.payload(row).hex())  # verified on the payload
            hits.append(VectorHit(row, score, {"cosine": round(score, 6)}))
        return hits

    def hash_image(self, image: DecodedImage, *, variants: bool) -> ImageHash:
        luma = image.luma()
        rows = np.array_split(np.arange(luma.shape[0]), 2)
        cols = np.array_split(np.arange(luma.shape[1]), 4)
        means = np.array([luma[np.ix_(r, c)].mean() for r in rows for c in cols], np.float32)
        return ImageHash(means.tobytes().hex())


@pytest.fixture(scope="module")
def grid() -> HashType:
    if VNAME not in hashtypes.names():
        hashtypes.register(ToyGridVector())
    return hashtypes.get(VNAME)


def test_a_registered_vector_type_is_indexed_with_faiss_and_matches(
    grid: HashType, tmp_path: Path
) -> None:
    check_hash_type(grid)
    listed = _photo(tmp_path, 3, "listed.jpg")
    value = uploadscan.hash_file(listed, extra=[VNAME]).extra[VNAME]
    rng = np.random.default_rng(0)
    others = [rng.random(8, dtype=np.float32).tobytes().hex() for _ in range(200)]
    list_file = tmp_path / "grid.txt"
    list_file.write_text("".join(f"{VNAME} {v}\n" for v in [*others, value]))
    copy = tmp_path / "copy.jpg"
    with Image.open(listed) as image:
        edited = image.resize((480, 360))
        edited.paste((255, 255, 255), (0, 0, 24, 18))  # a small sticker moves one cell a bit
        edited.save(copy, quality=70)
    home = tmp_path / "home"
    with Scanner.open(home) as scanner:
        scanner.add_list("grids", kind="block", source=str(list_file))
        assert scanner.sync()[0].ok
    # A new scanner builds the list's vector index file; matches come from that file.
    with Scanner.open(home) as scanner:
        manifest = json.loads((home / "index" / "manifest.json").read_text())
        assert manifest["types"][VNAME]["kind"] == "vector"
        verdict = scanner.scan(copy)
        assert verdict.action is Action.BLOCK, verdict.reasons
        [match] = verdict.matches
        assert match.hash_type == VNAME and match.value == value
        assert match.evidence is not None and match.evidence["cosine"] >= 0.999
        assert scanner.scan(_photo(tmp_path, 4, "other.jpg")).action is Action.ALLOW
        # An entry added after the file was built is found in the delta, exactly.
        extra = rng.random(8, dtype=np.float32).tobytes().hex()
        scanner.store.apply_batch("grids", [EntryUpsert(VNAME, extra)])
        assert scanner.lookup({VNAME: extra}).action is Action.BLOCK
        # The list's own setting decides: a stricter minimum than this copy reaches.
        reached = float(match.evidence["cosine"])
        assert reached < 1.0
        strict = uploadscan.ListSettings.from_dict({"toy_grid8_min": (reached + 1.0) / 2})
        scanner.store.update_settings("grids", strict)
        assert scanner.scan(copy).action is Action.ALLOW
