"""Whether the node's off-site restic repository opens with the node's settings."""

from __future__ import annotations

import shlex
from typing import TypedDict

from pyinfra.api import FactBase
from typing_extensions import override

# What restic says when the repository's folder holds no repository yet (0.14 to 0.17).
_ABSENT_MARKS = ("Is there a repository at the following location?", "repository does not exist")


class OffsiteRepositoryState(TypedDict):
    """``state`` is ready, absent, not-installed or error; ``message`` says why (error)."""

    state: str
    message: str


class OffsiteRepository(FactBase[OffsiteRepositoryState]):
    """
    Returns whether the off-site repository opens (``restic cat config``) through the
    node's wrapper, within two minutes.

    + wrapper: the restic wrapper that reads the node's off-site settings

    .. code:: python

        {"state": "error", "message": "Fatal: wrong password or no key found"}
    """

    @override
    @staticmethod
    def default() -> OffsiteRepositoryState:
        return {"state": "not-installed", "message": ""}

    @override
    def command(self, wrapper: str) -> str:
        quoted = shlex.quote(wrapper)
        return (
            f"if [ ! -x {quoted} ]; then echo not-installed; "
            f"elif out=$(timeout 120 {quoted} cat config 2>&1 >/dev/null); then echo ready; "
            "else echo failed; printf '%s\\n' \"$out\" | tail -n 4; fi"
        )

    @override
    def process(self, output: list[str]) -> OffsiteRepositoryState:
        first, rest = output[0].strip(), [line.strip() for line in output[1:] if line.strip()]
        if first in ("ready", "not-installed"):
            return {"state": first, "message": ""}
        if any(mark in line for line in rest for mark in _ABSENT_MARKS):
            return {"state": "absent", "message": ""}
        return {"state": "error", "message": " ".join(rest) or "restic failed without a message"}
