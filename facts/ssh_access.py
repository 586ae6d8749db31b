"""Read what decides who can log in over SSH: keys, groups, sshd's settings, version, host keys."""

from __future__ import annotations

import re
import shlex
from typing import Any

from pyinfra.api import FactBase
from typing_extensions import override

USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")
_OPENSSH_VERSION = re.compile(r"OpenSSH_(\d+)\.(\d+)")
_HOST_KEY_PATH = re.compile(r"^/etc/ssh/ssh_host_([a-z0-9]+)_key$")
# Key types as OpenSSH names them; an authorized_keys line may start with options instead.
_KEY_TYPE = re.compile(r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|sk-\S+@openssh\.com)$")


class AuthorizedKeys(FactBase[list[str]]):
    """
    Returns the public keys in a user's ``~/.ssh/authorized_keys``, as ``type key``.

    Options in front of a key and comments after it are left out; a missing user or
    file gives an empty list.

    + user: the account whose keys to read

    .. code:: python

        ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3...", "ssh-rsa AAAAB3NzaC1yc2E..."]
    """

    default = list

    @override
    def command(self, user: str) -> str:
        if not USER_NAME.match(user):
            raise ValueError(f"invalid user name: {user!r}")
        home = f"$(getent passwd {shlex.quote(user)} | cut -d : -f 6)"
        return (
            f'h="{home}"; if [ -n "$h" ]; then cat "$h/.ssh/authorized_keys" 2>/dev/null; fi; true'
        )

    @override
    def process(self, output: list[str]) -> list[str]:
        keys = []
        for line in output:
            words = line.strip().split()
            if not words or words[0].startswith("#"):
                continue
            for index, word in enumerate(words[:-1]):
                if _KEY_TYPE.match(word):
                    keys.append(f"{word} {words[index + 1]}")
                    break
        return keys


class SshdDropIn(FactBase["list[str] | None"]):
    """
    Returns the lines of an sshd configuration drop-in file, or ``None`` when absent.

    + path: the drop-in, e.g. ``/etc/ssh/sshd_config.d/10-socle.conf``

    .. code:: python

        ["# Managed by socle.", "PasswordAuthentication no", "PermitRootLogin no"]
    """

    @override
    @staticmethod
    def default() -> list[str] | None:
        return None

    @override
    def command(self, path: str) -> str:
        quoted = shlex.quote(path)
        return f"if [ -f {quoted} ]; then echo present; cat {quoted}; fi"

    @override
    def process(self, output: list[str]) -> list[str] | None:
        if not output or output[0] != "present":
            return None
        return list(output[1:])


class OpenSshServer(FactBase["dict[str, Any] | None"]):
    """
    Returns the version of the host's OpenSSH server and the algorithms it supports.

    The lists come from ``ssh -Q`` (the client of the same OpenSSH package, which
    openssh-server depends on); ``None`` when no ``sshd`` answers with a version.

    .. code:: python

        {
            "version": [9, 6],
            "kex": ["curve25519-sha256", "sntrup761x25519-sha512@openssh.com", ...],
            "cipher": ["chacha20-poly1305@openssh.com", "aes256-ctr", ...],
            "mac": ["hmac-sha2-256-etm@openssh.com", ...],
            "key-sig": ["ssh-ed25519", "rsa-sha2-512", ...],
        }
    """

    QUERIES = ("kex", "cipher", "mac", "key-sig")

    @override
    @staticmethod
    def default() -> dict[str, Any] | None:
        return None

    @override
    def command(self) -> str:
        queries = " ".join(self.QUERIES)
        return (
            "echo \"version $( (sshd -V 2>&1 || true) | grep -m 1 -o 'OpenSSH_[0-9]*\\.[0-9]*')\"; "
            f'for q in {queries}; do echo "query $q"; ssh -Q "$q" 2>/dev/null; done; true'
        )

    @override
    def process(self, output: list[str]) -> dict[str, Any] | None:
        result: dict[str, Any] = {query: [] for query in self.QUERIES}
        version = None
        current: list[str] | None = None
        for raw in output:
            line = raw.strip()
            if line.startswith("version "):
                match = _OPENSSH_VERSION.search(line)
                version = [int(match.group(1)), int(match.group(2))] if match else None
            elif line.startswith("query "):
                current = result.get(line[len("query ") :])
            elif line and current is not None:
                current.append(line)
        if version is None:
            return None
        result["version"] = version
        return result


class SshHostKeys(FactBase[list[dict[str, Any]]]):
    """
    Returns sshd's host key files in ``/etc/ssh``: path, type and size in bits.

    .. code:: python

        [
            {"path": "/etc/ssh/ssh_host_ed25519_key", "type": "ed25519", "bits": 256},
            {"path": "/etc/ssh/ssh_host_rsa_key", "type": "rsa", "bits": 3072},
        ]
    """

    default = list

    @override
    def command(self) -> str:
        return (
            "for f in /etc/ssh/ssh_host_*_key; do [ -f \"$f\" ] || continue; "
            'echo "$f $(ssh-keygen -l -f "$f" 2>/dev/null | cut -d " " -f 1)"; done; true'
        )

    @override
    def process(self, output: list[str]) -> list[dict[str, Any]]:
        keys = []
        for line in output:
            words = line.split()
            match = _HOST_KEY_PATH.match(words[0]) if words else None
            if not match:
                continue
            bits = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
            keys.append({"path": words[0], "type": match.group(1), "bits": bits})
        return keys


class UserGroups(FactBase[list[str]]):
    """
    Returns the names of the groups a user belongs to; an empty list for no such user.

    + user: the account

    .. code:: python

        ["ubuntu", "sudo"]
    """

    default = list

    @override
    def command(self, user: str) -> str:
        if not USER_NAME.match(user):
            raise ValueError(f"invalid user name: {user!r}")
        return f"id -Gn {shlex.quote(user)} 2>/dev/null; true"

    @override
    def process(self, output: list[str]) -> list[str]:
        return [group for line in output for group in line.split()]
