"""WireGuard keys on the operator's machine: checking them and deriving public keys."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey


def decode_key(key: str) -> bytes:
    """Return the 32 bytes of a base64 WireGuard key, or raise ``ValueError``.

    >>> len(decode_key("YNqHbfBQKaGvzefSSJfo7PQKjnrEXg0GXo6nnBAyMkw="))
    32
    """
    text = key.strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if len(raw) != 32 or len(text) != 44:
        raise ValueError("not a 32-byte key in base64 (44 characters ending in '=')")
    return raw


def public_key_of(private_key: str) -> str:
    """Return the public key of a base64 WireGuard private key, as ``wg pubkey`` does."""
    secret = X25519PrivateKey.from_private_bytes(decode_key(private_key))
    return base64.b64encode(secret.public_key().public_bytes_raw()).decode()


def generate_private_key() -> str:
    """Return a new base64 WireGuard private key, as ``wg genkey`` does."""
    return base64.b64encode(X25519PrivateKey.generate().private_bytes_raw()).decode()
