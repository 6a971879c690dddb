"""Ed25519 keys for signed feeds, via the ``cryptography`` package.

Ed25519 because a feed client must verify with no configuration beyond one short string the
platform pastes into its list source: a public key is 32 bytes (44 base64 characters),
signatures are deterministic (no nonce to get wrong on the publisher side) and there are no
parameters to negotiate. The private key is stored as unencrypted PKCS#8 PEM, readable by
its owner only; the public key as one base64 line in ``<private>.pub``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .._errors import ConfigError

__all__ = [
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_public_keys_file",
    "public_key_text",
    "verify_any",
]

_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def generate_keypair(path: Path | str) -> str:
    """Write a new private key to ``path`` (mode 0600, never overwriting) and its public key
    to ``path.pub``; return the public key as base64 text."""
    path = Path(path)
    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if p.exists():
            raise ConfigError(f"{p} already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        public = public_key_text(key.public_key())
        pub_path.write_text(public + "\n", encoding="ascii")
    except OSError as exc:
        raise ConfigError(f"cannot write key {path}: {exc.strerror or exc}") from None
    return public


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read private key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its base64 (or 64-hex) text form; ``ConfigError`` if malformed.

    The message says what is wrong with the text (a placeholder left in, a character that is
    not base64, a wrong length), never just its length: a key that lost a ``+`` on the way
    still has 44 characters.
    """
    stripped = text.strip()
    if stripped.startswith("<") and stripped.endswith(">"):
        raise ConfigError(
            f"feed key {stripped[:40]!r} is a placeholder: replace it with the publisher's "
            "public key (44 base64 characters, from their .pub file or what "
            "'uploadscan keys generate' printed)"
        )
    raw: bytes | None = None
    if len(stripped) == 64:
        try:
            raw = bytes.fromhex(stripped)
        except ValueError:
            raw = None
    if raw is None:
        bad = next((c for c in stripped if c not in _BASE64_CHARS), None)
        if bad is not None:
            pos = stripped.index(bad)
            raise ConfigError(
                f"a feed key must be an Ed25519 public key in base64 (44 characters) or hex "
                f"(64 characters); character {bad!r} at position {pos} is neither"
            )
        try:
            raw = base64.b64decode(stripped, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) != 32:
        raise ConfigError(
            "a feed key must be an Ed25519 public key: 32 bytes as base64 (44 characters) or "
            f"hex (64 characters), got {len(stripped)} characters"
            + (f" decoding to {len(raw)} bytes" if raw else " that do not decode")
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_keys_file(path: Path | str) -> list[Ed25519PublicKey]:
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read public key file {path}: {exc}") from None
    keys = [
        load_public_key(line)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not keys:
        raise ConfigError(f"public key file {path} holds no key")
    return keys


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(_raw(key)).decode("ascii")


def key_id(key: Ed25519PublicKey) -> str:
    """First 16 hex characters of SHA-256 over the raw public key (a hint, not an identity)."""
    return hashlib.sha256(_raw(key)).hexdigest()[:16]


def verify_any(keys: Iterable[Ed25519PublicKey], signature: bytes, data: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, data)
        except InvalidSignature:
            continue
        return True
    return False


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
