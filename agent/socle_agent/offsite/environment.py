"""The node's off-site settings file, `/etc/socle/offsite/env`, as restic will see it.

deploys/offsite.py writes it (format in docs/offsite.md): `NAME=value` lines of plain
characters, read alike by `sh`, systemd and `parse_environment` below, which is the
reference the operator's tools use too. It holds credentials, so it must be root's own
and private; the agent refuses it otherwise, and passes restic only the variables meant
for it (`RESTIC_*`, `AWS_*`), never on a command line.

Example:

    destination = read_destination(Path("/etc/socle/offsite/env"))
    destination.host                 # "vps1": restic's --host
    destination.redact(restic_said)  # the REST login and S3 secret key as ***
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from socle_agent.base import EXIT_CONFIG, AgentError

# The grammar (the deploy writes by it too): a value holds nothing that sh, systemd or a
# reader could take apart.
VALUE = re.compile(r"^[A-Za-z0-9_./:@%+,=-]*$")
NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# What restic (and the S3 library in it) reads from the environment; the rest of the file
# is for the caller.
PASSED_PREFIXES = ("RESTIC_", "AWS_")
REQUIRED = ("SOCLE_OFFSITE_HOST", "RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE")
HIDDEN = "***"


class EnvironmentFileError(ValueError):
    """A line of an environment file is not `NAME=value` of plain characters."""


class OffsiteNotSetUp(AgentError):
    """The node has no usable off-site settings (deploys/offsite.py has not run, ...)."""

    exit_code = EXIT_CONFIG


def parse_environment(text: str) -> dict[str, str]:
    """Read an environment file in the format of docs/offsite.md.

    Blank lines and lines starting with `#` are skipped; every other line is
    `NAME=value` with the value taken verbatim. Anything else raises
    `EnvironmentFileError` with the line number (never the line, which may be secret).

    >>> parse_environment("# comment\\nRESTIC_CACHE_DIR=/var/cache/socle-offsite\\n")
    {'RESTIC_CACHE_DIR': '/var/cache/socle-offsite'}
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or not NAME.match(name) or not VALUE.match(value):
            raise EnvironmentFileError(f"line {number} is not NAME=value of plain characters")
        values[name] = value
    return values


@dataclass(frozen=True)
class Destination:
    """The off-site repository as the node reaches it (from the environment file)."""

    host: str
    variables: Mapping[str, str]
    option: str | None
    limit_upload_kib: int
    secrets: tuple[str, ...]

    def global_arguments(self) -> list[str]:
        """What every restic call takes before its command (docs/offsite.md)."""
        args = ["-o", self.option] if self.option else []
        if self.limit_upload_kib:
            args += ["--limit-upload", str(self.limit_upload_kib)]
        return args

    def redact(self, text: str) -> str:
        """`text` with every credential of the destination replaced by ***."""
        for secret in self.secrets:
            text = text.replace(secret, HIDDEN)
        return text


def read_destination(path: Path) -> Destination:
    """Read and check the environment file at `path`.

    Raises OffsiteNotSetUp when it is missing, not root's own and private (it holds
    credentials and chooses what restic runs against), or not in the documented format.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise OffsiteNotSetUp(
            f"the off-site repository is not set up on this node: {path} is missing "
            "(deploys/offsite.py writes it)") from None
    except OSError as exc:
        raise OffsiteNotSetUp(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or (
                info.st_mode & 0o077):
            raise OffsiteNotSetUp(
                f"{path} holds credentials: it must be a file of this user's (uid "
                f"{os.geteuid()}) that only it can read (mode 0600); refusing to use it")
        try:
            values = parse_environment(handle.read())
        except (EnvironmentFileError, UnicodeDecodeError) as exc:
            raise OffsiteNotSetUp(f"{path}: {exc}") from None
    missing = [name for name in REQUIRED if not values.get(name)]
    if missing:
        raise OffsiteNotSetUp(f"{path} does not set {', '.join(missing)}")
    limit = values.get("SOCLE_OFFSITE_LIMIT_UPLOAD_KIB", "0")
    if not limit.isdigit():
        raise OffsiteNotSetUp(f"{path}: SOCLE_OFFSITE_LIMIT_UPLOAD_KIB is not a whole number")
    return Destination(
        host=values["SOCLE_OFFSITE_HOST"],
        variables={k: v for k, v in values.items() if k.startswith(PASSED_PREFIXES)},
        option=values.get("SOCLE_OFFSITE_RESTIC_OPTION") or None,
        limit_upload_kib=int(limit),
        secrets=_secrets(values),
    )


def _secrets(values: Mapping[str, str]) -> tuple[str, ...]:
    """Every form in which a credential of the file could appear in restic's words."""
    found = []
    repository = values.get("RESTIC_REPOSITORY", "")
    scheme, _, location = repository.partition(":")
    if scheme == "rest":
        password = urlsplit(location).password
        if password:
            found += [password, unquote(password)]
    if values.get("AWS_SECRET_ACCESS_KEY"):
        found.append(values["AWS_SECRET_ACCESS_KEY"])
    # the longest first, so that no part of one is left behind by a shorter one
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))
