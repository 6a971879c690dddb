"""The contract every hash type fulfils, and the registry that names them.

A hash type owns everything that depends on what its values mean: the stable name under which
values are stored (never derived from a class name, so renaming code cannot orphan a store),
how a string is validated and normalised, how two values are compared, and which values are
too degenerate to list. The store, index, sync and scanner only ever go through this interface,
so a new hash type is one module and one ``register()`` call.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from .._errors import InvalidHashError, UnknownHashTypeError


class HashType:
    """A named kind of hash with a fixed bit length, stored as lowercase hex.

    Subclasses set the class attributes; most need no methods of their own. ``default_threshold``
    is the largest Hamming distance still counted as a match (0 means exact equality only).
    """

    name: ClassVar[str]
    bits: ClassVar[int]
    default_threshold: ClassVar[int] = 0
    description: ClassVar[str] = ""
    example_values: ClassVar[Sequence[str]] = ()

    @property
    def is_exact(self) -> bool:
        """True when values only ever match by equality (cryptographic digests)."""
        return self.default_threshold == 0

    @property
    def hex_length(self) -> int:
        return self.bits // 4

    def validate(self, value: object) -> str:
        """Return the canonical form of ``value`` or raise ``InvalidHashError`` saying why."""
        if not isinstance(value, str):
            raise InvalidHashError(f"{self.name} hash must be a string, got {type(value).__name__}")
        text = value.strip().lower()
        if len(text) != self.hex_length or not _HEX.fullmatch(text):
            shown = value if len(value) <= 80 else value[:77] + "..."
            raise InvalidHashError(
                f"{self.name} hash must be {self.hex_length} hex characters, got {shown!r}"
            )
        return text

    def check_listable(self, value: str) -> None:
        """Raise ``InvalidHashError`` if a valid value must not be put on a list.

        ``value`` must already be canonical (the result of ``validate``): the store calls this
        for every entry it ingests, so it does not validate twice. Perceptual types reject
        values that would match vast swathes of unrelated content (a blank image's hash).
        """

    @property
    def plain_hex(self) -> bool:
        """True when ``validate`` is the base class's: canonical values are exactly the
        lowercase hex strings of ``hex_length``, so bulk code may check them as bytes."""
        return type(self).validate is HashType.validate

    def listable_mask(self, codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        """``check_listable`` over many values at once: one bool per row of ``codes``
        ((n, bits // 8) uint8, rows of canonical values). Bulk ingest calls this instead of
        ``check_listable`` per value; types with a vectorised rule override it, and this
        default asks ``check_listable`` row by row so a plug-in's rule is never skipped."""
        out = np.ones(codes.shape[0], dtype=np.bool_)
        for i, row in enumerate(codes):
            try:
                self.check_listable(row.tobytes().hex())
            except InvalidHashError:
                out[i] = False
        return out

    def to_bytes(self, value: str) -> bytes:
        return bytes.fromhex(self.validate(value))

    def from_bytes(self, data: bytes) -> str:
        if len(data) * 8 != self.bits:
            raise InvalidHashError(f"{self.name} hash must be {self.bits // 8} bytes")
        return data.hex()

    def distance(self, a: str, b: str) -> int:
        """Hamming distance in bits between two values of this type."""
        x = int(self.validate(a), 16) ^ int(self.validate(b), 16)
        return x.bit_count()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.bits} bits>"


_HEX = re.compile(r"[0-9a-f]+")


def bits_set(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int32]:
    """Number of set bits in each row of an (n, nbytes) uint8 array."""
    ones: npt.NDArray[np.int32] = np.bitwise_count(codes).sum(axis=1, dtype=np.int32)
    return ones


class HashTypeRegistry:
    """Name to hash type. Names are storage keys, so a duplicate is an error, never an override."""

    def __init__(self) -> None:
        self._types: dict[str, HashType] = {}

    def register(self, hash_type: HashType) -> HashType:
        name = getattr(hash_type, "name", None)
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
            raise ValueError(f"hash type name must match [a-z][a-z0-9_]*, got {name!r}")
        if name in self._types:
            raise ValueError(f"a hash type named {name!r} is already registered")
        bits = getattr(hash_type, "bits", None)
        if not isinstance(bits, int) or bits <= 0 or bits % 8:
            raise ValueError(f"hash type {name!r}: bits must be a positive multiple of 8")
        self._types[name] = hash_type
        return hash_type

    def get(self, name: str) -> HashType:
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(sorted(self._types))
            raise UnknownHashTypeError(
                f"unknown hash type {name!r}; known types: {known}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[HashType]:
        return iter(list(self._types.values()))

    def names(self) -> list[str]:
        return list(self._types)
