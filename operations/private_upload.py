"""Upload secret bytes to a root-owned file without them ever sitting where others can read.

pyinfra's own upload with ``_sudo`` first writes the bytes over SFTP to a predictable name
in ``/tmp`` with the SFTP server's default mode (often readable by every local user), then
copies them as root, and leaves that file behind when the copy fails. This command makes a
fresh folder of the login user (``mktemp -d``: mode 0700, an unpredictable name) for the
first hop, copies from there as root into a private temporary file beside the target,
renames it into place, and removes the folder whatever happened.

Example, inside an operation::

    yield PrivateUploadCommand(b"s3cret\\n", "/etc/socle/token", mode="600", owner="root:root")
"""

from __future__ import annotations

import logging
import re
from io import BytesIO
from typing import Any

from pyinfra.api import FileUploadCommand, QuoteString, StringCommand

logger = logging.getLogger(__name__)

SECRET_MODES = ("600", "640", "400", "440")
_OWNER = re.compile(r"^[a-z_][a-z0-9_-]*:[a-z_][a-z0-9_-]*$")
# What `mktemp -d` prints; anything else is refused before it is used in a command.
_STAGING_DIR = re.compile(r"^/[A-Za-z0-9_./-]+/socle-upload\.[A-Za-z0-9]{10}$")
_PRIVILEGE_ARGUMENTS = (
    "_sudo", "_sudo_user", "_use_sudo_login", "_preserve_sudo_env", "_su_user",
    "_doas", "_doas_user", "_dzdo", "_dzdo_user", "_chdir",
)  # fmt: skip


def check_secret_mode(mode: str) -> str:
    """Return ``mode`` without leading zeros if a secret may have it, else raise ``ValueError``.

    >>> check_secret_mode("0600")
    '600'
    """
    normalised = mode.lstrip("0")
    if normalised not in SECRET_MODES:
        raise ValueError(f"a secret's mode must be one of {', '.join(SECRET_MODES)}, not {mode}")
    return normalised


class PrivateUploadCommand(FileUploadCommand):
    """Put ``content`` at ``dest`` with ``mode`` and ``owner``, private from the first byte.

    Shown by pyinfra (``--dry``, ``-v``, ``--json``) as an upload to ``dest``; the content
    never appears in a command line.
    """

    def __init__(
        self, content: bytes, dest: str, mode: str = "600", owner: str = "root:root",
        **arguments: Any,
    ) -> None:  # fmt: skip
        super().__init__(BytesIO(content), dest, **arguments)
        self.mode = check_secret_mode(mode)
        if not _OWNER.match(owner):
            raise ValueError(f"invalid owner (user:group): {owner!r}")
        self.owner = owner

    def __repr__(self) -> str:
        return f"PrivateUploadCommand({self.dest})"

    def execute(self, state: Any, host: Any, connector_arguments: Any) -> bool:
        """Stage in a private folder, copy as root beside ``dest``, rename, clean up."""
        connector_arguments.update(self.connector_arguments)
        as_login_user = {
            key: value for key, value in connector_arguments.items()
            if key not in _PRIVILEGE_ARGUMENTS
        }  # fmt: skip
        quiet = {"print_output": state.print_output, "print_input": state.print_input}
        made, output = host.run_shell_command(
            StringCommand('umask 077 && mktemp -d "${TMPDIR:-/tmp}/socle-upload.XXXXXXXXXX"'),
            **quiet, **as_login_user,
        )  # fmt: skip
        folder = output.stdout.strip() if made else ""
        if not _STAGING_DIR.match(folder):
            logger.error(f"{host.name}: cannot make a private folder for an upload: {output}")
            return False
        staged = f"{folder}/upload"
        new = f"{self.dest}.socle-new"
        copied = False
        try:
            if host.put_file(self.src, staged, **quiet, **as_login_user):
                # umask first: the copy is never readable by others, even before chmod.
                copied, output = host.run_shell_command(
                    StringCommand(
                        "umask 077 && cp", QuoteString(staged), QuoteString(new),
                        "&& chown", self.owner, QuoteString(new),
                        "&& chmod", self.mode, QuoteString(new),
                        "&& mv -f", QuoteString(new), QuoteString(self.dest),
                        "|| { rm -f", QuoteString(new), "; exit 1; }",
                    ),
                    **quiet, **connector_arguments,
                )  # fmt: skip
                if not copied:
                    logger.error(f"{host.name}: cannot put the upload at {self.dest}: {output}")
        finally:
            removed, output = host.run_shell_command(
                StringCommand("rm -rf", QuoteString(folder)), **quiet, **as_login_user
            )
            if not removed:
                logger.error(f"{host.name}: cannot remove the staging folder {folder}: {output}")
        return bool(copied and removed)
