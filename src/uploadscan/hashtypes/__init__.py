"""Hash types: what a hash value is, how it is validated and compared.

Plug-in authors subclass ``HashType`` and call ``register()``; ``uploadscan.testing`` holds the
contract test every type must pass.
"""

from __future__ import annotations

from ..hashing._builtin import (
    AHashType,
    DHashType,
    Md5HashType,
    PdqHashType,
    PHashType,
    Sha256HashType,
    WHashType,
)
from ..hashing._protocol import HashType, HashTypeRegistry

__all__ = [
    "AHashType",
    "DHashType",
    "HashType",
    "HashTypeRegistry",
    "Md5HashType",
    "PHashType",
    "PdqHashType",
    "Sha256HashType",
    "WHashType",
    "get",
    "names",
    "register",
    "registry",
]

registry = HashTypeRegistry()
for _type in (
    PdqHashType(),
    Md5HashType(),
    Sha256HashType(),
    PHashType(),
    DHashType(),
    AHashType(),
    WHashType(),
):
    registry.register(_type)

#: Image hash types computed only when asked for (``hash_file(..., extra=["phash"])``).
IMAGEHASH_TYPES = ("phash", "dhash", "ahash", "whash")


def register(hash_type: HashType) -> HashType:
    """Add a hash type to the global registry; its name must be new."""
    return registry.register(hash_type)


def get(name: str) -> HashType:
    """The registered hash type called ``name`` (``UnknownHashTypeError`` if none)."""
    return registry.get(name)


def names() -> list[str]:
    return registry.names()
