"""Decrypting a value from a real SOPS file encrypted for a real age identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyrage import x25519

from socle.sops_secrets import SopsError, decrypt_value
from tests.sops_files import write_sops_file


@pytest.fixture
def sops_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    throwaway = "YNqHbfBQKaGvzefSSJfo7PQKjnrEXg0GXo6nnBAyMkw="  # not-a-secret: test vector
    encrypted, key_file = write_sops_file(tmp_path, {"wireguard_private_key": throwaway})
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
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
