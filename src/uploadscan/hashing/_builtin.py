"""The hash types uploadscan ships: PDQ, the two digests, and imagehash's 64-bit hashes."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from .._errors import InvalidHashError
from ._protocol import HashType, bits_set


class PdqHashType(HashType):
    """Meta's PDQ: 256-bit perceptual hash, the industry's shared format for image lists.

    Threshold 31 is the convention ThreatExchange, GIFCT and NCMEC use. Hashes of near-blank
    images (very few or very many bits set) are refused for listing because they match every
    flat image an innocent user uploads.
    """

    name = "pdq"
    bits = 256
    default_threshold = 31
    description = "PDQ perceptual image hash (256 bits)"
    # From python-threatexchange's PdqSignal.get_examples() (bridge-mods/aaa-orig.jpg, c.png).
    example_values: ClassVar[tuple[str, ...]] = (
        "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
        "e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064",
    )
    min_bits_set: ClassVar[int] = 32

    def check_listable(self, value: str) -> None:
        ones = int(value, 16).bit_count()
        if ones < self.min_bits_set or ones > self.bits - self.min_bits_set:
            raise InvalidHashError(
                f"pdq hash {value} is degenerate ({ones} of 256 bits set): it would match "
                "unrelated near-blank images, so it cannot be listed"
            )

    def listable_mask(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        ones = bits_set(codes)
        return (ones >= self.min_bits_set) & (ones <= self.bits - self.min_bits_set)


class Md5HashType(HashType):
    """MD5 of the exact bytes: catches byte-identical re-uploads, nothing more."""

    name = "md5"
    bits = 128
    description = "MD5 digest of the file bytes"
    example_values: ClassVar[tuple[str, ...]] = (
        "d41d8cd98f00b204e9800998ecf8427e",
        "9e107d9d372bb6826bd81d3542a419d6",
    )


class Sha256HashType(HashType):
    """SHA-256 of the exact bytes; also the content id in audit records."""

    name = "sha256"
    bits = 256
    description = "SHA-256 digest of the file bytes"
    example_values: ClassVar[tuple[str, ...]] = (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
    )


class _ImageHash64(HashType):
    """Base of imagehash's 64-bit hashes (8x8 hash size), hex as ``str(imagehash)`` writes."""

    bits = 64
    default_threshold = 8

    def check_listable(self, value: str) -> None:
        ones = int(value, 16).bit_count()
        if ones < 4 or ones > 60:
            raise InvalidHashError(
                f"{self.name} hash {value} is degenerate ({ones} of 64 bits set) "
                "and cannot be listed"
            )

    def listable_mask(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        ones = bits_set(codes)
        return (ones >= 4) & (ones <= 60)


class PHashType(_ImageHash64):
    name = "phash"
    description = "imagehash perceptual (DCT) hash, 64 bits"
    example_values: ClassVar[tuple[str, ...]] = ("ba8c84536bd3c366", "d6cd9bb2383264e4")


class DHashType(_ImageHash64):
    name = "dhash"
    description = "imagehash difference hash, 64 bits"
    example_values: ClassVar[tuple[str, ...]] = ("0026273b2b19550e", "cc608414248cccd8")


class AHashType(_ImageHash64):
    name = "ahash"
    description = "imagehash average hash, 64 bits"
    example_values: ClassVar[tuple[str, ...]] = ("ffd7918181c9ffff", "fefcf206d604440c")


class WHashType(_ImageHash64):
    name = "whash"
    description = "imagehash wavelet (Haar) hash, 64 bits"
    example_values: ClassVar[tuple[str, ...]] = ("ffd391818181a5e7", "fefef206d644440c")
