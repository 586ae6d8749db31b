"""Read what decides who can log in over SSH: authorized keys and socle's sshd settings."""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase
from typing_extensions import override

USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")
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
