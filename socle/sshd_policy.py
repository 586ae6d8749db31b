"""The hardened sshd settings for one host's OpenSSH, and the guard that keeps the operator in.

``hardened_settings`` picks the algorithms from what the host's OpenSSH reports it supports
(``facts.ssh_access.OpenSshServer``), so one list serves Ubuntu 24.04 (OpenSSH 9.6),
Debian 12 (9.2) and later releases: the post-quantum hybrid key exchange is offered
wherever the binary has one, and keywords newer than the host's OpenSSH are left out.

``check_keeps_deploy_login`` refuses settings that would refuse the deploy user's keys,
naming the setting, before anything on the host changes.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from socle.inventory_checks import InventoryDataError

SettingValue = str | list[str]

# Best first. Only what the baselines (ssh-audit's hardening guides, DevSec, CIS) accept:
# no NIST curves, no SHA-1, no encrypt-and-MAC, no 64-bit tags.
POST_QUANTUM_KEX = (
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
)
# curve25519 stays for clients without a post-quantum hybrid, pyinfra's paramiko among them.
KEX = (*POST_QUANTUM_KEX, "curve25519-sha256", "curve25519-sha256@libssh.org")
CIPHERS = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
MACS = (
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
)
HOST_KEY_ALGORITHMS = ("ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256")
# Ed25519 (also on a security key) and RSA with SHA-2 signatures; certificates of those.
USER_KEY_ALGORITHMS = (
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
)
CA_ALGORITHMS = ("ssh-ed25519", "sk-ssh-ed25519@openssh.com", "rsa-sha2-512", "rsa-sha2-256")
# The host key types sshd serves; the deploy removes the others (ECDSA, DSA) from the host.
HOST_KEY_TYPES = ("ed25519", "rsa")
MIN_RSA_BITS = 3072
HOST_KEY_DIR = "/etc/ssh"

# OpenSSH's own default for PubkeyAcceptedAlgorithms (9.x), which ``+``/``-``/``^`` lists
# change; used only to judge an inventory value written that way.
OPENSSH_DEFAULT_USER_KEY_ALGORITHMS = (
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
# Keywords socle does not take from the inventory: a Match or Include would swallow or
# pull in the lines after it, and the port is the firewall's business (ssh_port).
_NOT_OVERRIDABLE = {"match": "a Match block", "include": "an Include", "port": "the port"}
_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_VALUE = re.compile(r"^[^\n\r#]+$")


@dataclass(frozen=True)
class OpenSsh:
    """What a host's OpenSSH supports, as ``facts.ssh_access.OpenSshServer`` reads it."""

    version: tuple[int, int]
    kex: tuple[str, ...]
    ciphers: tuple[str, ...]
    macs: tuple[str, ...]
    signatures: tuple[str, ...]

    @classmethod
    def from_fact(cls, fact: Mapping[str, Any] | None) -> OpenSsh:
        """Build from the fact's value; ``ValueError`` when sshd was not found."""
        if not fact or not fact.get("version"):
            raise ValueError("no OpenSSH server found on the host (sshd -V gave no version)")
        major, minor = fact["version"]
        return cls(
            version=(int(major), int(minor)),
            kex=tuple(fact.get("kex", ())),
            ciphers=tuple(fact.get("cipher", ())),
            macs=tuple(fact.get("mac", ())),
            signatures=tuple(fact.get("key-sig", ())),
        )


def _supported(keyword: str, wanted: Sequence[str], available: Sequence[str]) -> str:
    chosen = [name for name in wanted if name in available]
    if not chosen:
        raise ValueError(f"this OpenSSH supports none of the hardened {keyword}: {wanted}")
    return ",".join(chosen)


def hardened_settings(
    openssh: OpenSsh,
    *,
    deploy_user: str,
    password_login: bool = False,
    banner_path: str = "/etc/issue.net",
) -> dict[str, SettingValue]:
    """Return socle's sshd settings for ``openssh``, in the order they are written.

    >>> settings = hardened_settings(openssh_9_6, deploy_user="ubuntu")  # doctest: +SKIP
    >>> settings["KexAlgorithms"].split(",")[0]  # doctest: +SKIP
    'sntrup761x25519-sha512@openssh.com'
    """
    settings: dict[str, SettingValue] = {
        "PermitRootLogin": "no",
        "PasswordAuthentication": "yes" if password_login else "no",
        "KbdInteractiveAuthentication": "no",
        "PermitEmptyPasswords": "no",
        "PubkeyAuthentication": "yes",
        "AllowUsers": deploy_user,
        # Only the host keys socle keeps; the others are removed from the host.
        "HostKey": [f"{HOST_KEY_DIR}/ssh_host_{kind}_key" for kind in HOST_KEY_TYPES],
        "KexAlgorithms": _supported("KexAlgorithms", KEX, openssh.kex),
        "Ciphers": _supported("Ciphers", CIPHERS, openssh.ciphers),
        "MACs": _supported("MACs", MACS, openssh.macs),
        "HostKeyAlgorithms": _supported(
            "HostKeyAlgorithms", HOST_KEY_ALGORITHMS, openssh.signatures
        ),
        "PubkeyAcceptedAlgorithms": _supported(
            "PubkeyAcceptedAlgorithms", USER_KEY_ALGORITHMS, openssh.signatures
        ),
        "CASignatureAlgorithms": _supported(
            "CASignatureAlgorithms", CA_ALGORITHMS, openssh.signatures
        ),
    }
    if openssh.version >= (9, 1):
        settings["RequiredRSASize"] = str(MIN_RSA_BITS)
    settings.update(
        {
            "LoginGraceTime": "30",
            "MaxAuthTries": "3",
            # pyinfra keeps an SFTP channel open beside its command channels.
            "MaxSessions": "4",
            "ClientAliveInterval": "300",
            "ClientAliveCountMax": "2",
            "TCPKeepAlive": "no",
            "Compression": "no",
            # Key fingerprints of every login in the journal.
            "LogLevel": "VERBOSE",
            # Admins reach every admin surface through the VPN: no tunnels through SSH.
            "AllowTcpForwarding": "no",
            "AllowStreamLocalForwarding": "no",
            "GatewayPorts": "no",
            "PermitTunnel": "no",
            "AllowAgentForwarding": "no",
            "X11Forwarding": "no",
            "PermitUserEnvironment": "no",
            "IgnoreRhosts": "yes",
            "HostbasedAuthentication": "no",
            "UseDNS": "no",
            "PrintLastLog": "yes",
            "StrictModes": "yes",
            "Banner": banner_path,
        }
    )
    # Subsystem sftp stays as the distribution sets it in sshd_config: pyinfra uploads
    # files over SFTP.
    return settings


def apply_overrides(
    settings: Mapping[str, SettingValue], overrides: Any
) -> dict[str, SettingValue]:
    """Return ``settings`` with the inventory's ``sshd_settings`` laid over them.

    A value replaces socle's for the same keyword (matched without regard to case, as
    sshd does); new keywords come last. Malformed entries are refused, naming the key.
    """
    if overrides is None:
        return dict(settings)
    if not isinstance(overrides, Mapping):
        raise InventoryDataError(
            "sshd_settings", f"expected a mapping of sshd keywords, got {overrides!r}"
        )
    merged = dict(settings)
    by_lower = {keyword.lower(): keyword for keyword in merged}
    for keyword, value in overrides.items():
        where = f"sshd_settings.{keyword}"
        if not isinstance(keyword, str) or not _KEYWORD.match(keyword):
            raise InventoryDataError(where, f"{keyword!r} is not an sshd keyword")
        if keyword.lower() in _NOT_OVERRIDABLE:
            raise InventoryDataError(
                where, f"{_NOT_OVERRIDABLE[keyword.lower()]} cannot be set here"
            )
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) and _VALUE.match(v) for v in values):
            raise InventoryDataError(where, f"{value!r} is not a one-line sshd value")
        merged[by_lower.get(keyword.lower(), keyword)] = value
    return merged


@dataclass(frozen=True)
class AuthorizedKey:
    """One key of ``authorized_keys``: its type, its base64 blob and (RSA) its size."""

    key_type: str
    blob: str

    @property
    def label(self) -> str:
        """The key as an operator recognises it: type and the blob's end."""
        return f"{self.key_type} ...{self.blob[-12:]}"

    @property
    def rsa_bits(self) -> int | None:
        """The modulus size of an RSA key, ``None`` for other types or a malformed blob."""
        if self.key_type != "ssh-rsa":
            return None
        try:
            data = base64.b64decode(self.blob, validate=True)
            fields = []
            offset = 0
            for _ in range(3):  # key type, exponent, modulus
                (length,) = struct.unpack(">I", data[offset : offset + 4])
                fields.append(data[offset + 4 : offset + 4 + length])
                offset += 4 + length
        except (binascii.Error, struct.error, ValueError):
            return None
        if fields[0] != b"ssh-rsa" or not fields[2]:
            return None
        return int.from_bytes(fields[2], "big").bit_length()


def parse_authorized_keys(keys: Iterable[str]) -> list[AuthorizedKey]:
    """Turn ``type blob`` strings (``facts.ssh_access.AuthorizedKeys``) into keys."""
    parsed = []
    for key in keys:
        words = key.split()
        if len(words) >= 2:
            parsed.append(AuthorizedKey(words[0], words[1]))
    return parsed


def _signatures_for(key_type: str) -> tuple[str, ...]:
    if key_type == "ssh-rsa":
        return ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
    return (key_type,)


def _matches(patterns: Iterable[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def accepted_algorithms(value: str) -> list[str]:
    """Resolve a PubkeyAcceptedAlgorithms value (plain, ``+``, ``-`` or ``^`` list)."""
    default = list(OPENSSH_DEFAULT_USER_KEY_ALGORITHMS)
    items = value[1:].split(",") if value[:1] in "+-^" and value else value.split(",")
    if value.startswith("+"):
        return default + items
    if value.startswith("^"):
        return items + default
    if value.startswith("-"):
        return [name for name in default if not _matches(items, name)]
    return items


def _one(settings: Mapping[str, SettingValue], keyword: str) -> str | None:
    for name, value in settings.items():
        if name.lower() == keyword.lower():
            return value[0] if isinstance(value, list) else value
    return None


def _words(settings: Mapping[str, SettingValue], keyword: str) -> list[str] | None:
    for name, value in settings.items():
        if name.lower() == keyword.lower():
            values = value if isinstance(value, list) else [value]
            return [word for item in values for word in item.split()]
    return None


def _user_patterns(patterns: list[str]) -> list[str]:
    # USER@HOST patterns depend on where the operator connects from, which is not known
    # here: only those for any host count.
    return [p.split("@", 1)[0] for p in patterns if "@" not in p or p.split("@", 1)[1] == "*"]


def check_keeps_deploy_login(
    settings: Mapping[str, SettingValue],
    user: str,
    groups: Sequence[str],
    authorized_keys: Iterable[str],
    host_name: str,
) -> None:
    """Refuse sshd settings under which one of ``user``'s keys would stop working.

    Every key in the user's ``authorized_keys`` must stay accepted (DSA keys excepted,
    which OpenSSH itself refuses): a refusal names the setting as
    ``sshd_settings.<Keyword>``, the inventory key that changes it.
    """

    def refuse(keyword: str, problem: str) -> InventoryDataError:
        return InventoryDataError(
            f"sshd_settings.{keyword}",
            f"{problem}: refusing to change sshd on {host_name}, it would lock the deploy "
            f"user {user!r} out",
        )

    if (_one(settings, "PubkeyAuthentication") or "yes").lower() == "no":
        raise refuse("PubkeyAuthentication", "'no' turns key logins off")
    methods = _one(settings, "AuthenticationMethods")
    if methods and methods.lower() != "any":
        lists = [item.split(",") for item in methods.split()]
        if not any(all(m == "publickey" for m in item) for item in lists):
            raise refuse(
                "AuthenticationMethods", f"{methods!r} does not allow a key on its own"
            )
    root_login = (_one(settings, "PermitRootLogin") or "").lower()
    if user == "root" and root_login in ("no", "forced-commands-only"):
        raise refuse("PermitRootLogin", f"{root_login!r} refuses root, the deploy user")
    allow_users = _words(settings, "AllowUsers")
    if allow_users is not None and not _matches(_user_patterns(allow_users), user):
        raise refuse("AllowUsers", f"{' '.join(allow_users)!r} does not include {user!r}")
    deny_users = _words(settings, "DenyUsers")
    if deny_users and _matches([p.split("@", 1)[0] for p in deny_users], user):
        raise refuse("DenyUsers", f"{' '.join(deny_users)!r} matches {user!r}")
    allow_groups = _words(settings, "AllowGroups")
    if allow_groups is not None and not any(_matches(allow_groups, g) for g in groups):
        raise refuse(
            "AllowGroups",
            f"{' '.join(allow_groups)!r} matches none of {user!r}'s groups {list(groups)}",
        )
    deny_groups = _words(settings, "DenyGroups")
    if deny_groups and any(_matches(deny_groups, g) for g in groups):
        raise refuse("DenyGroups", f"{' '.join(deny_groups)!r} matches a group of {user!r}")
    key_files = _words(settings, "AuthorizedKeysFile")
    if key_files is not None and not {
        ".ssh/authorized_keys", "%h/.ssh/authorized_keys", "~/.ssh/authorized_keys"
    } & set(key_files):
        raise refuse(
            "AuthorizedKeysFile",
            f"{' '.join(key_files)!r} leaves out ~/.ssh/authorized_keys, where the keys are",
        )

    algorithms = accepted_algorithms(_one(settings, "PubkeyAcceptedAlgorithms") or "+")
    required_rsa = _one(settings, "RequiredRSASize")
    if required_rsa is not None and not required_rsa.isdigit():
        raise refuse("RequiredRSASize", f"{required_rsa!r} is not a number of bits")
    for key in parse_authorized_keys(authorized_keys):
        if key.key_type in ("ssh-dss", "ssh-dss-cert-v01@openssh.com"):
            continue
        if not any(_matches(algorithms, sig) for sig in _signatures_for(key.key_type)):
            raise refuse(
                "PubkeyAcceptedAlgorithms", f"the list refuses the key {key.label}"
            )
        bits = key.rsa_bits
        if required_rsa and bits is not None and bits < int(required_rsa):
            raise refuse(
                "RequiredRSASize",
                f"{required_rsa} refuses the {bits}-bit RSA key {key.label} (use a larger "
                f"key, or set sshd_settings.RequiredRSASize)",
            )
