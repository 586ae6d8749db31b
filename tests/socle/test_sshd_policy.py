"""sshd's hardened settings follow the host's OpenSSH; the guard keeps the deploy user in."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from socle.inventory_checks import InventoryDataError
from socle.sshd_policy import (
    AuthorizedKey,
    OpenSsh,
    accepted_algorithms,
    apply_overrides,
    check_keeps_deploy_login,
    hardened_settings,
)

# What `ssh -Q` lists on Debian 12 (OpenSSH 9.2) and on OpenSSH 9.9.
SIGNATURES = (
    "ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ecdsa-sha2-nistp256", "ssh-rsa",
    "rsa-sha2-256", "rsa-sha2-512", "ssh-ed25519-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
)  # fmt: skip
OPENSSH_9_2 = OpenSsh(
    version=(9, 2),
    kex=("diffie-hellman-group14-sha256", "ecdh-sha2-nistp256", "curve25519-sha256",
         "curve25519-sha256@libssh.org", "sntrup761x25519-sha512@openssh.com"),
    ciphers=("aes128-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
             "chacha20-poly1305@openssh.com", "aes128-cbc"),
    macs=("hmac-sha1", "hmac-sha2-256", "hmac-sha2-256-etm@openssh.com",
          "hmac-sha2-512-etm@openssh.com", "umac-128-etm@openssh.com", "umac-64@openssh.com"),
    signatures=SIGNATURES,
)  # fmt: skip
OPENSSH_9_9 = OpenSsh(
    version=(9, 9),
    kex=OPENSSH_9_2.kex + ("mlkem768x25519-sha256", "sntrup761x25519-sha512"),
    ciphers=OPENSSH_9_2.ciphers,
    macs=OPENSSH_9_2.macs,
    signatures=SIGNATURES,
)
OPENSSH_8_4 = OpenSsh(
    version=(8, 4),
    kex=("curve25519-sha256", "ecdh-sha2-nistp256"),
    ciphers=OPENSSH_9_2.ciphers,
    macs=OPENSSH_9_2.macs,
    signatures=SIGNATURES,
)
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3xSomeKeyMaterialThatIsNotChecked"


def rsa_key(bits: int) -> str:
    """An ssh-rsa public key line whose modulus has ``bits`` bits."""

    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    modulus = (1 << (bits - 1)) | 1
    blob = field(b"ssh-rsa") + field(b"\x01\x00\x01") + field(
        b"\x00" + modulus.to_bytes((bits + 7) // 8, "big")
    )
    return "ssh-rsa " + base64.b64encode(blob).decode()


def test_the_post_quantum_hybrid_comes_first_where_openssh_has_one() -> None:
    assert hardened_settings(OPENSSH_9_2, deploy_user="ubuntu")["KexAlgorithms"] == (
        "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org"
    )
    newer = hardened_settings(OPENSSH_9_9, deploy_user="ubuntu")["KexAlgorithms"]
    assert isinstance(newer, str)
    assert newer.split(",")[:3] == [
        "mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"
    ]  # fmt: skip
    assert hardened_settings(OPENSSH_8_4, deploy_user="ubuntu")["KexAlgorithms"] == (
        "curve25519-sha256"
    )


def test_only_modern_algorithms_are_offered() -> None:
    settings = hardened_settings(OPENSSH_9_2, deploy_user="ubuntu")
    offered = ",".join(
        str(settings[k]) for k in ("KexAlgorithms", "Ciphers", "MACs", "HostKeyAlgorithms")
    )

    for weak in ("nistp", "sha1", "cbc", "umac-64", "group14", "ssh-rsa,"):
        assert weak not in offered + ",", weak
    assert settings["HostKey"] == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"]


def test_keywords_newer_than_the_host_openssh_are_left_out() -> None:
    assert hardened_settings(OPENSSH_9_2, deploy_user="ubuntu")["RequiredRSASize"] == "3072"
    assert "RequiredRSASize" not in hardened_settings(OPENSSH_8_4, deploy_user="ubuntu")


def test_an_openssh_without_any_hardened_cipher_is_refused() -> None:
    bare = OpenSsh((9, 2), OPENSSH_9_2.kex, ("aes128-cbc",), OPENSSH_9_2.macs, SIGNATURES)

    with pytest.raises(ValueError, match="Ciphers"):
        hardened_settings(bare, deploy_user="ubuntu")


def test_openssh_from_the_fact_needs_a_version() -> None:
    with pytest.raises(ValueError, match="no OpenSSH server"):
        OpenSsh.from_fact(None)
    fact = {"version": [9, 6], "kex": ["curve25519-sha256"], "cipher": [], "mac": []}
    assert OpenSsh.from_fact(fact).version == (9, 6)


def test_overrides_replace_socle_values_case_insensitively() -> None:
    merged = apply_overrides(
        {"MaxAuthTries": "3", "LogLevel": "VERBOSE"}, {"maxauthtries": "4", "Banner": "none"}
    )

    assert merged == {"MaxAuthTries": "4", "LogLevel": "VERBOSE", "Banner": "none"}


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"Match": "User alice"}, "sshd_settings.Match"),
        ({"Port": "2222"}, "sshd_settings.Port"),
        ({"LogLevel": "INFO\nPasswordAuthentication yes"}, "sshd_settings.LogLevel"),
        ({"Log Level": "INFO"}, "sshd_settings.Log Level"),
        (["LogLevel"], "sshd_settings"),
    ],
)
def test_malformed_overrides_are_refused_naming_the_key(overrides: Any, key: str) -> None:
    with pytest.raises(InventoryDataError) as refusal:
        apply_overrides({}, overrides)
    assert refusal.value.key == key


def guard(overrides: dict[str, Any], keys: list[str], user: str = "ubuntu") -> None:
    settings = apply_overrides(hardened_settings(OPENSSH_9_2, deploy_user="ubuntu"), overrides)
    check_keeps_deploy_login(settings, user, ["ubuntu", "sudo"], keys, "node")


def test_socle_settings_keep_ed25519_and_large_rsa_keys() -> None:
    guard({}, [ED25519, rsa_key(3072), rsa_key(4096)])


@pytest.mark.parametrize(
    ("overrides", "keys", "setting"),
    [
        ({}, [ED25519, rsa_key(2048)], "RequiredRSASize"),
        ({}, ["ecdsa-sha2-nistp256 AAAAE2VjZHNh"], "PubkeyAcceptedAlgorithms"),
        ({"PubkeyAcceptedAlgorithms": "rsa-sha2-512"}, [ED25519], "PubkeyAcceptedAlgorithms"),
        ({"PubkeyAcceptedAlgorithms": "-ssh-ed25*"}, [ED25519], "PubkeyAcceptedAlgorithms"),
        ({"AllowUsers": "alice bob@*"}, [ED25519], "AllowUsers"),
        ({"AllowUsers": "ubuntu@10.0.0.1"}, [ED25519], "AllowUsers"),
        ({"DenyUsers": "ub*"}, [ED25519], "DenyUsers"),
        ({"AllowGroups": "admins"}, [ED25519], "AllowGroups"),
        ({"DenyGroups": "sudo"}, [ED25519], "DenyGroups"),
        ({"PubkeyAuthentication": "no"}, [ED25519], "PubkeyAuthentication"),
        ({"AuthenticationMethods": "publickey,password"}, [ED25519], "AuthenticationMethods"),
        ({"AuthorizedKeysFile": "/etc/ssh/keys/%u"}, [ED25519], "AuthorizedKeysFile"),
        ({"RequiredRSASize": "lots"}, [ED25519], "RequiredRSASize"),
    ],
)
def test_settings_that_would_refuse_a_deploy_key_are_refused_naming_them(
    overrides: dict[str, Any], keys: list[str], setting: str
) -> None:
    with pytest.raises(InventoryDataError) as refusal:
        guard(overrides, keys)

    assert refusal.value.key == f"sshd_settings.{setting}"
    assert "lock the deploy user 'ubuntu' out" in str(refusal.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {"AllowUsers": "alice ubuntu"},
        {"AllowUsers": "ub?ntu@*"},
        {"AllowGroups": "sudo"},
        {"AuthenticationMethods": "publickey,password publickey"},
        {"PubkeyAcceptedAlgorithms": "+ecdsa-sha2-nistp256"},
        {"AuthorizedKeysFile": ".ssh/authorized_keys .ssh/authorized_keys2"},
        {"RequiredRSASize": "2048"},
    ],
)
def test_settings_that_keep_the_deploy_keys_pass(overrides: dict[str, Any]) -> None:
    guard(overrides, [ED25519, rsa_key(2048)] if "RequiredRSASize" in overrides else [ED25519])


def test_root_as_deploy_user_needs_root_logins() -> None:
    with pytest.raises(InventoryDataError, match="PermitRootLogin"):
        guard({"AllowUsers": "root"}, [ED25519], user="root")
    guard({"AllowUsers": "root", "PermitRootLogin": "prohibit-password"}, [ED25519], "root")


def test_dsa_keys_are_ignored_as_openssh_refuses_them_anyway() -> None:
    guard({}, [ED25519, "ssh-dss AAAAB3NzaC1kc3M"])


def test_rsa_key_size_is_read_from_the_key() -> None:
    assert AuthorizedKey("ssh-rsa", rsa_key(2048).split()[1]).rsa_bits == 2048
    assert AuthorizedKey("ssh-rsa", "not-base64!").rsa_bits is None
    assert AuthorizedKey("ssh-ed25519", ED25519.split()[1]).rsa_bits is None


def test_accepted_algorithms_resolve_plus_minus_and_caret_lists() -> None:
    assert "ecdsa-sha2-nistp256" in accepted_algorithms("+ssh-dss")
    assert "ssh-dss" in accepted_algorithms("+ssh-dss")
    assert accepted_algorithms("^ssh-dss")[0] == "ssh-dss"
    assert not any(a.startswith("ecdsa") for a in accepted_algorithms("-ecdsa-*"))
    assert accepted_algorithms("ssh-ed25519") == ["ssh-ed25519"]
