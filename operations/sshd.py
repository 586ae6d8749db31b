"""Manage OpenSSH server settings through a drop-in, validated by ``sshd -t`` first."""

from __future__ import annotations

import re
from collections.abc import Generator

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.ssh_access import SshdDropIn

_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_VALUE = re.compile(r"^[^\n\r#]+$")
HEADER = "# Managed by socle: changes made here are overwritten."


def render_drop_in(settings: dict[str, str]) -> list[str]:
    """Return the drop-in's lines for ``settings``, in the order given.

    Raises ``ValueError`` for a keyword or value that could not be one sshd line.
    """
    lines = [HEADER]
    for keyword, value in settings.items():
        if not _KEYWORD.match(keyword) or not _VALUE.match(str(value)):
            raise ValueError(f"invalid sshd setting: {keyword!r} {value!r}")
        lines.append(f"{keyword} {value}")
    return lines


@operation()
def settings(
    settings: dict[str, str],
    path: str = "/etc/ssh/sshd_config.d/10-socle.conf",
    service: str = "ssh",
) -> Generator[StringCommand, None, None]:
    """
    Write sshd settings to a drop-in, check the whole configuration, then reload sshd.

    + settings: sshd keywords and their values, e.g. ``{"PermitRootLogin": "no"}``
    + path: the drop-in; sshd keeps the first value it reads for a keyword, and
      ``sshd_config`` includes ``sshd_config.d/*.conf`` at its top, so an early name
      such as ``10-socle.conf`` wins over the distribution's files
    + service: the systemd unit of sshd (``ssh`` on Debian and Ubuntu)

    The new file is put in place only if ``sshd -t`` accepts the resulting
    configuration; otherwise the previous file comes back, sshd is not reloaded and
    the operation fails, so a bad setting cannot lock the operator out.

    **Example:**

    .. code:: python

        sshd.settings(
            name="SSH: keys only, no root",
            settings={"PasswordAuthentication": "no", "PermitRootLogin": "no"},
        )
    """
    try:
        lines = render_drop_in(settings)
    except ValueError as error:
        raise OperationValueError(str(error)) from error

    if host.get_fact(SshdDropIn, path=path) == lines:
        host.noop(f"sshd settings in {path} are as wanted")
        return

    new, previous = path + ".new", path + ".previous"
    # Debian's sshd refuses to run -t without its privilege separation directory,
    # which only exists once the service has started.
    yield StringCommand(
        "install -d -m 0755 /run/sshd && umask 022 && printf '%s'",
        QuoteString("\n".join(lines) + "\n"),
        ">",
        QuoteString(new),
        "&& if [ -f",
        QuoteString(path),
        "]; then cp -p",
        QuoteString(path),
        QuoteString(previous),
        "; fi && mv -f",
        QuoteString(new),
        QuoteString(path),
        "&& if sshd -t; then rm -f",
        QuoteString(previous),
        "&& systemctl try-reload-or-restart",
        QuoteString(service),
        "; else if [ -f",
        QuoteString(previous),
        "]; then mv -f",
        QuoteString(previous),
        QuoteString(path),
        "; else rm -f",
        QuoteString(path),
        "; fi; echo 'sshd -t rejected the new settings; the previous ones were kept' >&2;"
        " exit 1; fi",
    )
