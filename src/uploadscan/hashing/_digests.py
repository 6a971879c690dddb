"""MD5 and SHA-256 of the exact bytes: the digest lists every hash-sharing programme uses.

They catch byte-identical copies of any file (a video, a PDF manifesto, a ZIP), so they are
computed for every upload whatever its type, from the bytes as they are read, and matched
exactly (a hash table, no threshold).
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

from ..media._intake import ByteDigest
from ._protocol import HashType, IndexKind


class Md5HashType(HashType):
    """MD5 of the exact bytes: catches byte-identical re-uploads, nothing more."""

    name = "md5"
    bits = 128
    index_kind = IndexKind.DIGEST
    computed_by_default = True
    description = "MD5 digest of the file bytes"
    example_values: ClassVar[tuple[str, ...]] = (
        "d41d8cd98f00b204e9800998ecf8427e",
        "9e107d9d372bb6826bd81d3542a419d6",
    )

    def byte_digest(self) -> ByteDigest:
        return hashlib.md5(usedforsecurity=False)


class Sha256HashType(HashType):
    """SHA-256 of the exact bytes; also the content id in audit records."""

    name = "sha256"
    bits = 256
    index_kind = IndexKind.DIGEST
    computed_by_default = True
    description = "SHA-256 digest of the file bytes"
    example_values: ClassVar[tuple[str, ...]] = (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
    )

    def byte_digest(self) -> ByteDigest:
        return hashlib.sha256()
