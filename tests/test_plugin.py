"""A hash type registered from outside the package hashes, syncs and matches end to end.

The toy type lives here, in a test module, and touches no uploadscan module: it is one class
and one ``register()`` call. It then has to pass the plug-in contract, be computed by
``hash_file`` and by ``Scanner.scan`` (only once a list holds it), sync from a list file
through the real sync code, be looked up in a real index file, honour its own per-list
threshold setting, and come back in the verdict's matches.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image, ImageFilter

import uploadscan
from uploadscan import Action, Scanner, hashtypes
from uploadscan.hashtypes import DecodedImage, HashType, ImageHash, IndexKind
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
