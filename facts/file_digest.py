"""Read what identifies a file's content and access: its SHA-256, mode and owner."""

from __future__ import annotations

import shlex
from typing import TypedDict

from pyinfra.api import FactBase
from typing_extensions import override


class FileDigestState(TypedDict):
    """A regular file's SHA-256, octal mode and ``user:group``."""

    sha256: str
    mode: str
    owner: str


class FileDigest(FactBase["FileDigestState | None"]):
    """
    Returns a regular file's SHA-256, mode and owner, or ``None`` when it is absent.

    + path: the file

    .. code:: python

        {"sha256": "9f86d0...", "mode": "644", "owner": "root:root"}
    """

    @override
    @staticmethod
    def default() -> FileDigestState | None:
        return None

    @override
    def command(self, path: str) -> str:
        quoted = shlex.quote(path)
        return (
            f"if [ -f {quoted} ]; then sha256sum < {quoted} | cut -d ' ' -f 1; "
            f"stat -c '%a %U:%G' {quoted}; fi"
        )

    @override
    def process(self, output: list[str]) -> FileDigestState | None:
        if len(output) != 2:
            return None
        mode, owner = output[1].split()
        return {"sha256": output[0].strip(), "mode": mode, "owner": owner}
