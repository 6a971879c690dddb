"""Every built-in hash type passes the plug-in contract; the registry guards storage names."""

from __future__ import annotations

import pytest

from uploadscan import HashTypeError, InvalidHashError, UnknownHashTypeError, hashtypes
from uploadscan.hashtypes import HashType, HashTypeRegistry
from uploadscan.testing import check_hash_type


@pytest.mark.parametrize("name", hashtypes.names())
def test_builtin_type_fulfils_contract(name: str) -> None:
    check_hash_type(hashtypes.get(name))


def test_builtin_names_are_the_stable_storage_keys() -> None:
    assert set(hashtypes.names()) >= {"pdq", "md5", "sha256", "phash", "dhash", "ahash", "whash"}
    assert hashtypes.get("pdq").bits == 256
    assert hashtypes.get("pdq").default_threshold == 31
    assert hashtypes.get("md5").is_exact and hashtypes.get("sha256").is_exact


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownHashTypeError, match=r"known types: .*pdq"):
        hashtypes.get("photodna")


def test_pdq_validate_normalises_and_rejects() -> None:
    pdq = hashtypes.get("pdq")
    value = "F8F8F0CEE0F4A84F06370A22038F63F0B36E2ED596621E1D33E6B39C4E9C9B22"
    assert pdq.validate(value) == value.lower()
    with pytest.raises(InvalidHashError, match="64 hex characters"):
        pdq.validate(value[:63])
    with pytest.raises(InvalidHashError, match="must be a string"):
        pdq.validate(12345)


def test_pdq_distance_counts_bits() -> None:
    pdq = hashtypes.get("pdq")
    a = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
    b = "f8f8f0cee0f4a84f06370a2a038f63f0b36e26d596621e1d33e6b39c4e9c9b22"
    expected = bin(int(a, 16) ^ int(b, 16)).count("1")
    assert pdq.distance(a, b) == expected == 2


@pytest.mark.parametrize("value", ["0" * 64, "f" * 64, "0" * 60 + "ffff"])
def test_degenerate_pdq_cannot_be_listed(value: str) -> None:
    with pytest.raises(InvalidHashError, match="degenerate"):
        hashtypes.get("pdq").check_listable(value)


def test_registry_rejects_duplicates_and_bad_names() -> None:
    class Custom(HashType):
        name = "custom_64"
        bits = 64
        default_threshold = 4
        example_values = ("0123456789abcdef", "fedcba9876543210")

    registry = HashTypeRegistry()
    registry.register(Custom())
    check_hash_type(Custom())
    with pytest.raises(HashTypeError, match="already registered"):
        registry.register(Custom())

    class BadName(Custom):
        name = "Bad-Name"

    with pytest.raises(HashTypeError, match="must match"):
        registry.register(BadName())


def test_contract_catches_a_broken_type() -> None:
    class Sloppy(HashType):
        name = "sloppy"
        bits = 64
        example_values = ("0123456789abcdef", "fedcba9876543210")

        def validate(self, value: object) -> str:
            return str(value)  # accepts anything

    with pytest.raises(HashTypeError, match=r"case matters|whitespace matters|malformed"):
        check_hash_type(Sloppy())


def test_contract_check_works_under_python_o(tmp_path: object) -> None:
    """The check raises real exceptions, so it still fails a broken type under -O."""
    import subprocess
    import sys

    code = (
        "from uploadscan.hashtypes import HashType\n"
        "from uploadscan.testing import check_hash_type\n"
        "class Sloppy(HashType):\n"
        "    name = 'sloppy'\n"
        "    bits = 64\n"
        "    example_values = ('0123456789abcdef', '0123456789abcdef')\n"
        "try:\n"
        "    check_hash_type(Sloppy())\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "HashTypeError"
