"""Turning one publisher record into one ``EntryUpsert``, the same way for every source.

Every source meets the same three cases: a malformed value (the publisher's bug: fail the
batch, naming the record), a well-formed value this store refuses to list (a near-blank PDQ
would match every flat image an innocent user uploads: skip it and count why), and a record of
a kind uploadscan does not hash (a URL, a SHA-512: skip and count). Keeping that policy here
means a skip reason reads the same in every sync summary.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from .. import hashtypes
from .._errors import InvalidHashError
from ..store._lists import EntryUpsert

__all__ = ["DEGENERATE", "EntryBuilder"]

# Skip reason for a valid value that check_listable refuses; ``.format(hash_type)``.
DEGENERATE = "{} degenerate (would match near-blank media)"
_LOWER_HEX = re.compile(r"[0-9a-f]+")


class EntryBuilder:
    """Validates values and builds upserts; counts skips in ``skipped``."""

    def __init__(self, skipped: Counter[str]) -> None:
        self.skipped = skipped
        self._types: dict[str, hashtypes.HashType] = {}
        self._plain_hex: dict[str, bool] = {}

    def _type(self, name: str) -> hashtypes.HashType:
        ht = self._types.get(name)
        if ht is None:
            ht = self._types[name] = hashtypes.get(name)
            # Only types that keep the base class's hex validation may take the fast path.
            self._plain_hex[name] = ht.plain_hex
        return ht

    def canonical(self, hash_type: str, value: object) -> str | None:
        """Canonical value, or ``None`` (counted) when valid but unlistable.

        ``InvalidHashError`` / ``UnknownHashTypeError`` for malformed input.
        """
        ht = self._type(hash_type)
        # Fast path for the common well-formed value; the type's own validate() otherwise,
        # so malformed values get its exact message.
        if (
            self._plain_hex[hash_type]
            and isinstance(value, str)
            and len(value) == ht.hex_length
            and _LOWER_HEX.fullmatch(value)
        ):
            canonical = value
        else:
            canonical = ht.validate(value)
        try:
            ht.check_listable(canonical)
        except InvalidHashError:
            self.skipped[DEGENERATE.format(hash_type)] += 1
            return None
        return canonical

    def delete_key(self, hash_type: str, value: object) -> tuple[str, str]:
        return hash_type, self._type(hash_type).validate(value)

    def upsert(
        self,
        hash_type: str,
        value: object,
        labels: tuple[str, ...] = (),
        external_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> EntryUpsert | None:
        canonical = self.canonical(hash_type, value)
        if canonical is None:
            return None
        return EntryUpsert(hash_type, canonical, labels, external_id, extra)
