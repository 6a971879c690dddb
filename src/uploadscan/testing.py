"""Contract tests for hash-type plug-ins.

Every hash type, built in or third party, must pass ``check_hash_type``: it is what media
intake, the store, the index files, sync and matching assume of a type. Plug-in authors call it
from their own tests::

    from uploadscan.testing import check_hash_type

    def test_my_type_fulfils_the_contract():
        check_hash_type(MyHashType())

A broken type raises ``uploadscan.HashTypeError`` naming the first broken rule (a real
exception, so the check also holds under ``python -O``).
"""

from __future__ import annotations

from ._errors import HashTypeError, InvalidHashError
from .hashing._hash_file import computable
from .hashing._protocol import Closeness, HashType, IndexKind, check_declaration
from .hashing._registry import HashTypeRegistry

__all__ = ["check_hash_type"]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise HashTypeError(message)


def check_hash_type(hash_type: HashType) -> None:
    """Raise ``HashTypeError`` describing the first way ``hash_type`` breaks the contract."""
    check_declaration(hash_type)
    name = hash_type.name
    _require(
        hash_type.default_threshold >= 0 or hash_type.closeness is Closeness.SCORE,
        f"{name}: negative default threshold",
    )
    if hash_type.index_kind is IndexKind.HAMMING:
        _require(
            hash_type.default_threshold < hash_type.bits // 2,
            f"{name}: a threshold of half the bits or more matches random hashes",
        )
    _require(
        hash_type.index_kind is not IndexKind.DIGEST or not hash_type.has_quality,
        f"{name}: a digest has no quality score",
    )
    examples = list(hash_type.example_values)
    _require(len(examples) >= 2, f"{name}: needs at least two example values")
    for example in examples:
        canonical = hash_type.validate(example)
        _require(hash_type.validate(canonical) == canonical, f"{name}: validate is not idempotent")
        if hash_type.plain_hex:
            _require(hash_type.validate(example.upper()) == canonical, f"{name}: case matters")
        _require(hash_type.validate(f"  {example}\n") == canonical, f"{name}: whitespace matters")
        _require(
            hash_type.from_bytes(hash_type.to_bytes(example)) == canonical,
            f"{name}: bytes round trip changes the value",
        )
        if hash_type.index_kind is not IndexKind.VECTOR:
            _require(
                len(hash_type.to_bytes(example)) == hash_type.code_bytes,
                f"{name}: to_bytes must give code_bytes ({hash_type.code_bytes}) bytes",
            )
        _require(
            hash_type.within(hash_type.compare(example, example), hash_type.default_threshold),
            f"{name}: a value does not match itself at the default threshold",
        )
        hash_type.check_listable(canonical)
    a, b = examples[0], examples[1]
    _require(
        hash_type.compare(a, b) == hash_type.compare(b, a), f"{name}: compare is not symmetric"
    )
    if hash_type.closeness is Closeness.DISTANCE:
        distance = hash_type.compare(a, b)
        _require(0 < distance <= hash_type.bits, f"{name}: the examples must differ")
    for bad in ("", "zz", examples[0][:-1], examples[0] + "0", "g" * max(1, hash_type.hex_length)):
        try:
            hash_type.validate(bad)
        except InvalidHashError:
            continue
        raise HashTypeError(f"{name}: validate accepted the malformed value {bad!r}")
    if hash_type.computed_by_default:
        _require(computable(hash_type), f"{name}: computed by default but computes nothing")
    registry = HashTypeRegistry()
    registry.register(hash_type)
    try:
        registry.register(hash_type)
    except HashTypeError:
        pass
    else:
        raise HashTypeError(f"{name}: a registry accepted the same name twice")
