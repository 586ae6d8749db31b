"""WireGuard keys on the operator's side: decoding and deriving public keys."""

from __future__ import annotations

import base64

import pytest

from socle.wireguard_keys import decode_key, generate_private_key, public_key_of

# RFC 7748, section 6.1: Alice's X25519 key pair.
RFC_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def test_public_key_of_matches_the_rfc_7748_vector() -> None:
    private = base64.b64encode(RFC_PRIVATE).decode()

    assert public_key_of(private) == base64.b64encode(RFC_PUBLIC).decode()


def test_generated_key_round_trips() -> None:
    key = generate_private_key()

    assert len(decode_key(key)) == 32
    assert len(public_key_of(key)) == 44


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("not a key", "not valid base64"),
        (base64.b64encode(b"x" * 31).decode(), "not a 32-byte key"),
        (base64.b64encode(b"x" * 33).decode(), "not a 32-byte key"),
    ],
)
def test_decode_key_with_malformed_key_raises(key: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_key(key)
