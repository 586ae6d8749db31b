"""The files that give the node its off-site repository, rendered from the settings.

On the node (the format is in docs/offsite.md, for the agent's off-site job):

- ``/etc/socle/offsite/env``: ``NAME=value`` lines (root only, it holds credentials),
  readable alike by ``sh`` (``set -a; . env``), systemd's ``EnvironmentFile=`` and the
  agent's ``parse_environment`` (``socle_agent.offsite.environment``, the one grammar
  both sides use), because every value is made of plain characters only;
- ``/etc/socle/offsite/password``: the repository password (root only);
- for the sftp destination: ``ssh_key``, ``known_hosts`` and ``ssh_config`` beside them,
  and ``/usr/local/lib/socle/offsite-ssh``, the program restic's rclone backend runs;
- ``/usr/local/sbin/socle-offsite-restic``: restic with all of the above
  (``sudo socle-offsite-restic snapshots``).

Example::

    text = environment_file(settings, secrets)
    text.splitlines()[-1]    # "RESTIC_CACHE_DIR=/var/cache/socle-offsite", say
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from socle_agent.offsite.environment import NAME, VALUE, EnvironmentFileError

from socle.offsite_settings import (
    OffsiteSettings,
    RestDestination,
    S3Destination,
    SftpDestination,
)

OFFSITE_DIR = "/etc/socle/offsite"
ENV_FILE = f"{OFFSITE_DIR}/env"
PASSWORD_FILE = f"{OFFSITE_DIR}/password"
SSH_KEY_FILE = f"{OFFSITE_DIR}/ssh_key"
KNOWN_HOSTS_FILE = f"{OFFSITE_DIR}/known_hosts"
SSH_CONFIG_FILE = f"{OFFSITE_DIR}/ssh_config"
CACHE_DIR = "/var/cache/socle-offsite"
SSH_PROGRAM = "/usr/local/lib/socle/offsite-ssh"
RESTIC_WRAPPER = "/usr/local/sbin/socle-offsite-restic"
SSH_HOST_ALIAS = "socle-offsite"

# Unreserved in a URL and plain in the file (not ~, which sh would expand).
_PLAIN = frozenset(string.ascii_letters + string.digits + "-._")


def percent_encode(text: str) -> str:
    """Encode every byte but ASCII letters, digits and ``- . _`` as ``%XX`` (a URL's login)."""
    return "".join(
        char if char in _PLAIN else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in text
    )


def repository(settings: OffsiteSettings, secrets: Mapping[str, str]) -> str:
    """The node's ``RESTIC_REPOSITORY`` (with the REST login, percent-encoded)."""
    destination = settings.destination
    if isinstance(destination, RestDestination):
        scheme, rest = destination.url.split("://", 1)
        login = (
            f"{percent_encode(destination.user)}:{percent_encode(secrets['offsite_rest_password'])}"
        )
        return f"rest:{scheme}://{login}@{rest}"
    if isinstance(destination, SftpDestination):
        # The server's forced command chooses the folder; restic's rclone backend only
        # needs a remote name.
        return f"rclone:{SSH_HOST_ALIAS}:"
    assert isinstance(destination, S3Destination)
    path = "/".join(part for part in (destination.bucket, destination.prefix) if part)
    return f"s3:{destination.endpoint}/{path}"


def environment(settings: OffsiteSettings, secrets: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``/etc/socle/offsite/env``, in the order they are written."""
    values = {
        "SOCLE_OFFSITE_DESTINATION": settings.kind,
        "SOCLE_OFFSITE_HOST": settings.host_name,
        "SOCLE_OFFSITE_LIMIT_UPLOAD_KIB": str(settings.limit_upload_kib),
        "RESTIC_REPOSITORY": repository(settings, secrets),
        "RESTIC_PASSWORD_FILE": PASSWORD_FILE,
        "RESTIC_CACHE_DIR": CACHE_DIR,
    }
    if isinstance(settings.destination, SftpDestination):
        values["SOCLE_OFFSITE_RESTIC_OPTION"] = f"rclone.program={SSH_PROGRAM}"
    if isinstance(settings.destination, S3Destination):
        values["AWS_ACCESS_KEY_ID"] = secrets["offsite_s3_access_key_id"]
        values["AWS_SECRET_ACCESS_KEY"] = secrets["offsite_s3_secret_access_key"]
        values["AWS_DEFAULT_REGION"] = settings.destination.region
    return values


def render_environment(values: Mapping[str, str], header: str) -> str:
    """Write ``values`` as ``NAME=value`` lines after a comment ``header``.

    Raises ``EnvironmentFileError`` naming the variable whose value holds anything but
    letters, digits and ``_ . / : @ % + , = -`` (never showing the value).
    """
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name, value in values.items():
        if not NAME.match(name):
            raise EnvironmentFileError(f"{name!r} is not a variable name")
        if not VALUE.match(value):
            raise EnvironmentFileError(
                f"the value of {name} holds characters other than letters, digits and "
                "_ . / : @ % + , = -"
            )
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def environment_file(settings: OffsiteSettings, secrets: Mapping[str, str]) -> str:
    """The whole text of ``/etc/socle/offsite/env``."""
    header = (
        "Managed by socle (deploys/offsite.py): edit the inventory, not this file.\n"
        "The off-site repository, for restic and the agent. Format: docs/offsite.md."
    )
    return render_environment(environment(settings, secrets), header)


def ssh_config(destination: SftpDestination) -> str:
    """``/etc/socle/offsite/ssh_config``: the one host, its pinned key, no prompts."""
    return (
        "# Managed by socle (deploys/offsite.py): the off-site host, for restic.\n"
        f"Host {SSH_HOST_ALIAS}\n"
        f"    HostName {destination.host}\n"
        f"    Port {destination.port}\n"
        f"    User {destination.user}\n"
        f"    IdentityFile {SSH_KEY_FILE}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {KNOWN_HOSTS_FILE}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n"
        "    BatchMode yes\n"
        "    ConnectTimeout 30\n"
        "    ServerAliveInterval 15\n"
        "    ServerAliveCountMax 4\n"
    )


def known_hosts(destination: SftpDestination) -> str:
    """``/etc/socle/offsite/known_hosts``: the off-site host's key from the inventory."""
    name = (
        destination.host if destination.port == 22 else f"[{destination.host}]:{destination.port}"
    )
    return f"{name} {destination.host_key}\n"


SSH_PROGRAM_TEXT = f"""#!/bin/sh
# Managed by socle (deploys/offsite.py). restic's rclone backend runs this to reach the
# off-site host; the host's authorized_keys forces this node's key to
# `rclone serve restic --stdio --append-only <folder>`, whatever is asked here.
exec ssh -F {SSH_CONFIG_FILE} {SSH_HOST_ALIAS} "$@"
"""

RESTIC_WRAPPER_TEXT = f"""#!/bin/sh
# Managed by socle (deploys/offsite.py): restic on the off-site repository of
# {ENV_FILE}, e.g. `sudo socle-offsite-restic snapshots`. See docs/offsite.md.
set -eu
set -a
. {ENV_FILE}
set +a
if [ -n "${{SOCLE_OFFSITE_RESTIC_OPTION:-}}" ]; then
    set -- -o "$SOCLE_OFFSITE_RESTIC_OPTION" "$@"
fi
if [ "${{SOCLE_OFFSITE_LIMIT_UPLOAD_KIB:-0}}" != 0 ]; then
    set -- --limit-upload "$SOCLE_OFFSITE_LIMIT_UPLOAD_KIB" "$@"
fi
exec restic "$@"
"""
