"""Manage OpenSSH server settings (a drop-in validated by ``sshd -t`` first) and host keys."""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping, Sequence

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.ssh_access import SshdDropIn, SshHostKeys

_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_VALUE = re.compile(r"^[^\n\r#]+$")
HEADER = "# Managed by socle: changes made here are overwritten."


def render_drop_in(settings: Mapping[str, str | list[str]]) -> list[str]:
    """Return the drop-in's lines for ``settings``, in the order given.

    A list value gives one line per item (``HostKey`` is such a keyword). Raises
    ``ValueError`` for a keyword or value that could not be one sshd line.
    """
    lines = [HEADER]
    for keyword, value in settings.items():
        for item in value if isinstance(value, list) else [value]:
            if not _KEYWORD.match(keyword) or not _VALUE.match(str(item)):
                raise ValueError(f"invalid sshd setting: {keyword!r} {item!r}")
            lines.append(f"{keyword} {item}")
    return lines


@operation()
def settings(
    settings: Mapping[str, str | list[str]],
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
        "install -d -m 0755 /run/sshd && umask 077 && printf '%s'",
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


_KEY_TYPE_NAME = re.compile(r"^[a-z0-9]+$")


@operation()
def host_keys(
    keep: Sequence[str] = ("ed25519", "rsa"),
    min_rsa_bits: int = 3072,
    service: str = "ssh",
) -> Generator[StringCommand, None, None]:
    """
    Keep only the host keys of the ``keep`` types in ``/etc/ssh``, making missing ones.

    + keep: key types to serve, as ``ssh-keygen -t`` names them
    + min_rsa_bits: an RSA host key smaller than this is replaced by a 4096-bit one
    + service: the systemd unit of sshd, reloaded when a served key was made

    Run it after ``settings`` has pointed sshd's ``HostKey`` lines at the kept keys,
    so sshd never refers to a removed file. A removed key is one clients may have
    pinned in ``known_hosts``: they will be asked to accept one of the kept keys.

    **Example:**

    .. code:: python

        sshd.host_keys(name="Host keys: Ed25519 and RSA only", keep=["ed25519", "rsa"])
    """
    for kind in keep:
        if not _KEY_TYPE_NAME.match(kind):
            raise OperationValueError(f"invalid host key type: {kind!r}")
    present = {key["type"]: key for key in host.get_fact(SshHostKeys)}
    commands: list[str] = []
    made = False
    for kind, unused in sorted(present.items()):
        if kind not in keep:
            commands.append(f"rm -f {unused['path']} {unused['path']}.pub")
    for kind in keep:
        path = f"/etc/ssh/ssh_host_{kind}_key"
        key = present.get(kind)
        too_small = kind == "rsa" and key is not None and (key["bits"] or 0) < min_rsa_bits
        if key is None or too_small:
            size = " -b 4096" if kind == "rsa" else ""
            commands.append(
                f"rm -f {path} {path}.pub && ssh-keygen -q -t {kind}{size} -N '' -f {path}"
            )
            made = True
    if not commands:
        host.noop(f"the host keys are {', '.join(keep)} only")
        return
    if made:
        commands.append(f"systemctl try-reload-or-restart {service}")
    yield StringCommand(" && ".join(commands))
