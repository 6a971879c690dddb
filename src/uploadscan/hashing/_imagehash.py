"""imagehash's 64-bit hashes (average, perceptual, difference, wavelet) as hash types.

Some lists and research data sets carry these instead of PDQ. They are computed only when a
list holds them or ``hash_file`` is asked for them by name, from the full-resolution decode
(imagehash resizes the image itself), with hex as ``str(imagehash.ImageHash)`` writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._errors import InvalidHashError
from ..media._image import DecodedImage
from ._protocol import HashType, ImageHash, IndexKind, bits_set


class _ImageHash64(HashType):
    """Base of imagehash's 64-bit hashes (8x8 hash size)."""

    bits = 64
    index_kind = IndexKind.HAMMING
    default_threshold = 8
    needs_full_image = True
    #: The imagehash function that computes this type.
    function_name: ClassVar[str]

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

    def hash_image(self, image: DecodedImage, *, variants: bool) -> ImageHash:
        import imagehash  # loaded only when a list or a caller asks for these types

        function: Callable[[Any], object] = getattr(imagehash, self.function_name)
        return ImageHash(str(function(image.image)))


class PHashType(_ImageHash64):
    name = "phash"
    function_name = "phash"
    description = "imagehash perceptual (DCT) hash, 64 bits"
    example_values: ClassVar[tuple[str, ...]] = ("ba8c84536bd3c366", "d6cd9bb2383264e4")


class DHashType(_ImageHash64):
    name = "dhash"
    function_name = "dhash"
    description = "imagehash difference hash, 64 bits"
    example_values: ClassVar[tuple[str, ...]] = ("0026273b2b19550e", "cc608414248cccd8")


class AHashType(_ImageHash64):
    name = "ahash"
    function_name = "average_hash"
    description = "imagehash average hash, 64 bits"
    example_values: ClassVar[tuple[str, ...]] = ("ffd7918181c9ffff", "fefcf206d604440c")


class WHashType(_ImageHash64):
    name = "whash"
    function_name = "whash"
    description = "imagehash wavelet (Haar) hash, 64 bits"
    example_values: ClassVar[tuple[str, ...]] = ("ffd391818181a5e7", "fefef206d644440c")
