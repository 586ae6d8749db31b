"""Manage small text files (configuration) written in one command, with an optional follow-up."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Generator

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.file_digest import FileDigest

_MODE = re.compile(r"^[0-7]{3,4}$")
_OWNER = re.compile(r"^[a-z_][a-z0-9_-]*:[a-z_][a-z0-9_-]*$")


def write_command(
    path: str, content: str, mode: str = "644", owner: str = "root:root"
) -> StringCommand:
    """Return one shell command that replaces ``path`` with ``content`` atomically.

    The content goes in the command itself (quoted), so nothing is uploaded: use it for
    configuration, never for secrets, which would show in the process list.
    """
    if not _MODE.match(mode):
        raise ValueError(f"invalid file mode: {mode!r}")
    if not _OWNER.match(owner):
        raise ValueError(f"invalid owner (user:group): {owner!r}")
    temp = path + ".socle-new"
    return StringCommand(
        "umask 077 && printf '%s'",
        QuoteString(content),
        ">",
        QuoteString(temp),
        "&& chown",
        owner,
        QuoteString(temp),
        "&& chmod",
        mode,
        QuoteString(temp),
        "&& mv -f",
        QuoteString(temp),
        QuoteString(path),
    )


@operation()
def file(
    path: str,
    content: str,
    mode: str = "644",
    owner: str = "root:root",
    then: str | None = None,
) -> Generator[StringCommand, None, None]:
    """
    Make a text file hold exactly ``content`` with ``mode`` and ``owner``.

    + path: the file
    + content: its whole text (not secret: it is part of the command)
    + mode: octal permissions, e.g. ``644``
    + owner: ``user:group``
    + then: a shell command run right after the file changed (e.g. to apply it)

    **Example:**

    .. code:: python

        text_files.file(
            name="Forwarding",
            path="/etc/sysctl.d/60-socle-forwarding.conf",
            content="net.ipv4.ip_forward = 1\\n",
            then="sysctl -q -p /etc/sysctl.d/60-socle-forwarding.conf",
        )
    """
    try:
        command = write_command(path, content, mode, owner)
    except ValueError as error:
        raise OperationValueError(str(error)) from error
    current = host.get_fact(FileDigest, path=path)
    wanted = {
        "sha256": hashlib.sha256(content.encode()).hexdigest(),
        "mode": mode.lstrip("0") or "0",
        "owner": owner,
    }
    if current is not None and dict(current) == wanted:
        host.noop(f"{path} is as wanted")
        return
    if then:
        command = StringCommand(command, "&&", then)
    yield command
