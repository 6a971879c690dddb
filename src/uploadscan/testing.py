"""Contract tests for hash-type plug-ins.

Every hash type, built in or third party, must pass ``check_hash_type``: it is what the store,
the index and the sync code assume of a type. Plug-in authors call it from their own tests::

    from uploadscan.testing import check_hash_type

    def test_my_type_fulfils_the_contract():
        check_hash_type(MyHashType())
"""

from __future__ import annotations

import re

from ._errors import InvalidHashError
from .hashtypes import HashType, HashTypeRegistry

__all__ = ["check_hash_type"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def check_hash_type(hash_type: HashType) -> None:
    """Raise ``AssertionError`` describing the first way ``hash_type`` breaks the contract."""
    name = hash_type.name
    assert isinstance(name, str) and _NAME.fullmatch(name), f"bad storage name {name!r}"
    assert hash_type.bits > 0 and hash_type.bits % 8 == 0, f"{name}: bits must be a multiple of 8"
    assert hash_type.default_threshold >= 0, f"{name}: negative default threshold"
    assert hash_type.default_threshold < hash_type.bits // 2, (
        f"{name}: a threshold of half the bits or more matches random hashes"
    )
    examples = list(hash_type.example_values)
    assert len(examples) >= 2, f"{name}: needs at least two example values"
    for example in examples:
        canonical = hash_type.validate(example)
        assert hash_type.validate(canonical) == canonical, f"{name}: validate is not idempotent"
        assert hash_type.validate(example.upper()) == canonical, f"{name}: case matters"
        assert hash_type.validate(f"  {example}\n") == canonical, f"{name}: whitespace matters"
        assert hash_type.from_bytes(hash_type.to_bytes(example)) == canonical, (
            f"{name}: bytes round trip changes the value"
        )
        assert len(hash_type.to_bytes(example)) * 8 == hash_type.bits, f"{name}: wrong byte size"
        assert hash_type.distance(example, example) == 0, f"{name}: distance to itself is not 0"
        hash_type.check_listable(canonical)
    a, b = examples[0], examples[1]
    assert hash_type.distance(a, b) == hash_type.distance(b, a), f"{name}: distance not symmetric"
    assert 0 < hash_type.distance(a, b) <= hash_type.bits, f"{name}: examples must differ"
    for bad in ("", "zz", examples[0][:-1], examples[0] + "0", "g" * (hash_type.bits // 4)):
        try:
            hash_type.validate(bad)
        except InvalidHashError:
            continue
        raise AssertionError(f"{name}: validate accepted the malformed value {bad!r}")
    registry = HashTypeRegistry()
    registry.register(hash_type)
    try:
        registry.register(hash_type)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{name}: a registry accepted the same name twice")
