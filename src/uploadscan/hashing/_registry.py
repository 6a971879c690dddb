"""Name to hash type: the built-in types, and plug-ins registered from outside the package.

Names are storage keys, so a duplicate is an error, never an override: a plug-in that took
"pdq" would silently reinterpret every stored PDQ entry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from .._errors import HashTypeError, UnknownHashTypeError
from ._digests import Md5HashType, Sha256HashType
from ._imagehash import AHashType, DHashType, PHashType, WHashType
from ._pdq import PdqHashType
from ._protocol import HashType, check_declaration
from ._sift import SiftHashType
from ._tmk import TmkHashType

__all__ = ["HashTypeRegistry", "get", "names", "register", "registry"]


class HashTypeRegistry:
    """The hash types a process knows, by name."""

    def __init__(self) -> None:
        self._types: dict[str, HashType] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def register(self, hash_type: HashType) -> HashType:
        """Add ``hash_type``; ``HashTypeError`` for a broken declaration or a taken name."""
        check_declaration(hash_type)
        with self._lock:
            if hash_type.name in self._types:
                raise HashTypeError(f"a hash type named {hash_type.name!r} is already registered")
            self._types = {**self._types, hash_type.name: hash_type}
            self._generation += 1
        return hash_type

    def get(self, name: str) -> HashType:
        try:
            return self._types[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._types))
            raise UnknownHashTypeError(
                f"unknown hash type {name!r}; known types: {known}"
            ) from None

    @property
    def generation(self) -> int:
        """Bumped by every registration, so caches of "what can be computed" know to refresh."""
        return self._generation

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[HashType]:
        return iter(list(self._types.values()))

    def names(self) -> list[str]:
        return list(self._types)


registry = HashTypeRegistry()
for _type in (
    PdqHashType(),
    Md5HashType(),
    Sha256HashType(),
    PHashType(),
    DHashType(),
    AHashType(),
    WHashType(),
    TmkHashType(),
    SiftHashType(),
):
    registry.register(_type)


def register(hash_type: HashType) -> HashType:
    """Add a hash type to the global registry; its name must be new."""
    return registry.register(hash_type)


def get(name: str) -> HashType:
    """The registered hash type called ``name`` (``UnknownHashTypeError`` if none)."""
    return registry.get(name)


def names() -> list[str]:
    return registry.names()
