"""Decrypting a value from a real SOPS file encrypted for a real age identity."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pyrage import x25519

from socle.sops_secrets import SopsError, decrypt_value, sops_executable


def encrypt_for(identity: x25519.Identity, plain: Path) -> Path:
    encrypted = plain.with_suffix(".sops.yaml")
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"}
    result = subprocess.run(
        [sops_executable(), "encrypt", "--age", str(identity.to_public()), str(plain)],
        capture_output=True, text=True, env=env, check=True,
    )
    encrypted.write_text(result.stdout)
    return encrypted


@pytest.fixture
def sops_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    identity = x25519.Identity.generate()
    key_file = tmp_path / "operator.age-key"
    key_file.write_text(str(identity) + "\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    plain = tmp_path / "wireguard.yaml"
    plain.write_text("wireguard_private_key: YNqHbfBQKaGvzefSSJfo7PQKjnrEXg0GXo6nnBAyMkw=\n")
    encrypted = encrypt_for(identity, plain)
    plain.unlink()
    return encrypted


def test_decrypt_value_returns_the_clear_value(sops_file: Path) -> None:
    assert "YNqHbf" not in sops_file.read_text()

    value = decrypt_value(sops_file, "wireguard_private_key")

    assert value == "YNqHbfBQKaGvzefSSJfo7PQKjnrEXg0GXo6nnBAyMkw="


def test_decrypt_value_with_another_identity_fails(
    sops_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.age-key"
    other.write_text(str(x25519.Identity.generate()) + "\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other))

    with pytest.raises(SopsError, match="cannot decrypt 'wireguard_private_key'"):
        decrypt_value(sops_file, "wireguard_private_key")


def test_decrypt_value_missing_key_fails(sops_file: Path) -> None:
    with pytest.raises(SopsError, match="'absent'"):
        decrypt_value(sops_file, "absent")
