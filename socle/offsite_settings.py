"""The off-site repository from the inventory: where restic sends the node's backups.

The host's ``offsite`` table chooses one destination and is checked whole, with the
key at fault named, before anything on the node changes (``InventoryDataError``):

    offsite = {
        "destination": "rest",                   # rest, sftp or s3
        # restic's REST protocol, e.g. `rclone serve restic --append-only` on another host
        "rest": {"url": "https://backup.example.net:8000/vps1/", "user": "vps1"},
        # SSH to another host whose authorized_keys line forces this node's key to
        # `rclone serve restic --stdio --append-only <folder>` (docs/offsite.md)
        "sftp": {"host": "backup.example.net", "port": 22, "user": "socle-vps1",
                 "host_key": "ssh-ed25519 AAAA..."},
        # S3-compatible object storage (OVH Object Storage)
        "s3": {"endpoint": "https://s3.gra.io.cloud.ovh.net", "bucket": "socle-backups",
               "prefix": "vps1", "region": "gra"},
        "sops_file": "secrets/prod.sops.yaml",   # the secrets listed in SECRET_KEYS
        "limit_upload_kib": 0,                   # restic --limit-upload (KiB/s), 0: none
        # The operator's side: `socle offsite prune` with full rights on the repository.
        "operator": {"repository": "sftp:socle-vps1@backup.example.net:/srv/socle-restic/vps1"},
        "retention": {"keep_last": 6, "keep_daily": 14, "keep_weekly": 8, "keep_monthly": 12},
    }

Plain ``http://`` URLs are refused unless the table says ``"insecure_http": True`` (a
private network; the data is encrypted by restic either way, the login is not).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from socle.inventory_checks import InventoryDataError
from socle.sops_secrets import SopsError, decrypt_value

INVENTORY_KEY = "offsite"
DESTINATIONS = ("rest", "sftp", "s3")
RETENTION_KEYS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")
# What each destination reads from the SOPS file (``offsite.sops_file``).
SECRET_KEYS = {
    "rest": ("offsite_restic_password", "offsite_rest_password"),
    "sftp": ("offsite_restic_password", "offsite_ssh_private_key"),
    "s3": ("offsite_restic_password", "offsite_s3_access_key_id", "offsite_s3_secret_access_key"),
}
OPERATOR_SECRET_KEYS = {
    "sftp": ("offsite_restic_password",),
    "rest": ("offsite_restic_password", "offsite_admin_rest_password"),
    "s3": ("offsite_restic_password", "offsite_admin_s3_access_key_id",
           "offsite_admin_s3_secret_access_key"),
}  # fmt: skip
MIN_PASSWORD_LENGTH = 16

_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_PATH = re.compile(r"^(?:/[A-Za-z0-9._-]+)*/?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9._-]{1,253}$")
_KEY_TYPES = (
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "ssh-rsa",
)  # fmt: skip


@dataclass(frozen=True)
class RestDestination:
    """restic's REST protocol: ``url`` (the repository's folder on the server), ``user``."""

    url: str
    user: str


@dataclass(frozen=True)
class SftpDestination:
    """SSH to ``user@host:port``, the server known by ``host_key`` only."""

    host: str
    port: int
    user: str
    host_key: str


@dataclass(frozen=True)
class S3Destination:
    """An S3-compatible bucket: ``endpoint`` (scheme and host), ``bucket``, ``prefix``."""

    endpoint: str
    bucket: str
    prefix: str
    region: str


@dataclass(frozen=True)
class OperatorAccess:
    """The repository as the operator reaches it, with full rights (prune)."""

    repository: str
    kind: str
    sftp_command: str | None
    rest_user: str | None


@dataclass(frozen=True)
class OffsiteSettings:
    """The checked ``offsite`` table of one host."""

    host_name: str
    destination: RestDestination | SftpDestination | S3Destination
    sops_file: str
    limit_upload_kib: int
    operator: OperatorAccess | None
    retention: Mapping[str, int] | None

    @property
    def kind(self) -> str:
        """``rest``, ``sftp`` or ``s3``."""
        return {RestDestination: "rest", SftpDestination: "sftp", S3Destination: "s3"}[
            type(self.destination)
        ]


def _table(key: str, value: Any, known: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InventoryDataError(key, f"expected a table, got {value!r}")
    for unknown in sorted(set(value) - known):
        raise InventoryDataError(f"{key}.{unknown}", f"unknown key (known: {sorted(known)})")
    return value


def _string(key: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InventoryDataError(key, f"{value!r} is not {what}")
    return value


def _integer(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InventoryDataError(key, f"{value!r} is not a whole number from {low} to {high}")
    return value


def _base_url(key: str, value: Any, insecure_http: bool, with_path: bool) -> str:
    """Check an http(s) URL made of plain characters only; return it without a final /."""
    if not isinstance(value, str):
        raise InventoryDataError(key, f"{value!r} is not a URL")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http"):
        raise InventoryDataError(key, f"{value!r}: expected an https:// URL")
    if parts.scheme == "http" and not insecure_http:
        raise InventoryDataError(
            key,
            f"{value!r} is plain http: the login would cross the network in clear. Use "
            "https, or set insecure_http = True beside it on a private network",
        )
    if parts.username is not None or parts.password is not None:
        raise InventoryDataError(key, "holds a login: credentials belong in the SOPS file")
    if parts.query or parts.fragment:
        raise InventoryDataError(key, f"{value!r}: no query or fragment allowed")
    host = parts.hostname or ""
    if not _HOST.match(host):
        raise InventoryDataError(key, f"{value!r}: {host!r} is not a host name or address")
    try:
        port = parts.port
    except ValueError:
        raise InventoryDataError(key, f"{value!r}: the port is not a number") from None
    if not with_path and parts.path not in ("", "/"):
        raise InventoryDataError(key, f"{value!r}: the endpoint takes no path")
    if not _PATH.match(parts.path) or "/../" in parts.path + "/" or "/./" in parts.path + "/":
        raise InventoryDataError(key, f"{value!r}: the path may hold letters, digits, . _ - /")
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")


def check_host_key(key: str, value: Any) -> str:
    """Return ``type base64`` of an SSH public host key, checked (no comment kept)."""
    if not isinstance(value, str):
        raise InventoryDataError(key, f"{value!r} is not an SSH host key")
    fields = value.split()
    if len(fields) < 2 or fields[0] not in _KEY_TYPES:
        raise InventoryDataError(
            key, f"expected '<type> <base64>' with a type of {', '.join(_KEY_TYPES)}"
        )
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        raise InventoryDataError(key, "the key is not valid base64") from None
    name = fields[0].encode()
    if blob[4 : 4 + len(name)] != name or int.from_bytes(blob[:4], "big") != len(name):
        raise InventoryDataError(key, f"the key's data is not a {fields[0]} key")
    return f"{fields[0]} {fields[1]}"


def _destination(
    table: Mapping[str, Any], kind: str
) -> RestDestination | SftpDestination | S3Destination:
    key = f"{INVENTORY_KEY}.{kind}"
    if kind == "rest":
        rest = _table(key, table.get("rest"), {"url", "user", "insecure_http"})
        insecure = _flag(f"{key}.insecure_http", rest.get("insecure_http", False))
        url = _base_url(f"{key}.url", rest.get("url"), insecure, with_path=True)
        user = _string(f"{key}.user", rest.get("user"), _USER, "a user name (a-z, 0-9, _ . -)")
        return RestDestination(url + "/", user)
    if kind == "sftp":
        sftp = _table(key, table.get("sftp"), {"host", "port", "user", "host_key"})
        return SftpDestination(
            host=_string(f"{key}.host", sftp.get("host"), _HOST, "a host name or address"),
            port=_integer(f"{key}.port", sftp.get("port", 22), 1, 65535),
            user=_string(f"{key}.user", sftp.get("user"), _USER, "a user name"),
            host_key=check_host_key(f"{key}.host_key", sftp.get("host_key")),
        )
    s3 = _table(key, table.get("s3"), {"endpoint", "bucket", "prefix", "region", "insecure_http"})
    insecure = _flag(f"{key}.insecure_http", s3.get("insecure_http", False))
    prefix = s3.get("prefix", "")
    if prefix != "":
        _string(f"{key}.prefix", prefix, _PREFIX, "a folder in the bucket (a-z, 0-9, . _ - /)")
        if ".." in prefix.split("/") or "." in prefix.split("/"):
            raise InventoryDataError(f"{key}.prefix", f"{prefix!r}: no . or .. parts")
    return S3Destination(
        endpoint=_base_url(f"{key}.endpoint", s3.get("endpoint"), insecure, with_path=False),
        bucket=_string(f"{key}.bucket", s3.get("bucket"), _BUCKET, "an S3 bucket name"),
        prefix=prefix,
        region=_string(f"{key}.region", s3.get("region"), _REGION, "a region (e.g. gra)"),
    )


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InventoryDataError(key, f"expected True or False, got {value!r}")
    return value


def _operator(value: Any) -> OperatorAccess | None:
    if value is None:
        return None
    key = f"{INVENTORY_KEY}.operator"
    table = _table(key, value, {"repository", "sftp_command", "rest_user"})
    repository = table.get("repository")
    if not isinstance(repository, str) or "\n" in repository:
        raise InventoryDataError(f"{key}.repository", f"{repository!r} is not a repository")
    kind = repository.split(":", 1)[0]
    if kind not in DESTINATIONS:
        raise InventoryDataError(
            f"{key}.repository",
            f"{repository!r}: expected sftp:user@host:/folder, rest:https://host/folder/ "
            "or s3:https://endpoint/bucket/prefix",
        )
    if kind != "sftp" and "@" in repository:
        raise InventoryDataError(f"{key}.repository", "holds a login: it belongs in SOPS")
    sftp_command = table.get("sftp_command")
    if sftp_command is not None and (
        kind != "sftp" or not isinstance(sftp_command, str) or "\n" in sftp_command
    ):
        raise InventoryDataError(
            f"{key}.sftp_command", "a one-line ssh command, for an sftp: repository only"
        )
    rest_user = table.get("rest_user")
    if kind == "rest":
        rest_user = _string(f"{key}.rest_user", rest_user, _USER, "a user name")
    elif rest_user is not None:
        raise InventoryDataError(f"{key}.rest_user", "for a rest: repository only")
    return OperatorAccess(repository, kind, sftp_command, rest_user)


def _retention(value: Any) -> Mapping[str, int] | None:
    if value is None:
        return None
    key = f"{INVENTORY_KEY}.retention"
    table = _table(key, value, set(RETENTION_KEYS))
    return {name: _integer(f"{key}.{name}", table[name], 0, 10000) for name in table}


def offsite_settings(data: Mapping[str, Any], host_name: str) -> OffsiteSettings | None:
    """Return the checked ``offsite`` table of a host, or None when it has none.

    Raises ``InventoryDataError`` naming the first key at fault.

    >>> offsite_settings({"offsite": {"destination": "ftp"}}, "vps")
    Traceback (most recent call last):
    ...
    socle.inventory_checks.InventoryDataError: inventory key 'offsite.destination': ...
    """
    value = data.get(INVENTORY_KEY)
    if value is None:
        return None
    known = {"destination", *DESTINATIONS, "sops_file", "limit_upload_kib", "operator",
             "retention"}  # fmt: skip
    table = _table(INVENTORY_KEY, value, known)
    kind = table.get("destination")
    if kind not in DESTINATIONS:
        raise InventoryDataError(
            f"{INVENTORY_KEY}.destination", f"{kind!r}: expected one of {', '.join(DESTINATIONS)}"
        )
    if not _HOST_NAME.match(host_name):
        raise InventoryDataError(INVENTORY_KEY, f"the host name {host_name!r} is not plain")
    destination = _destination(table, kind)
    sops_file = table.get("sops_file")
    if not isinstance(sops_file, str) or not sops_file:
        raise InventoryDataError(
            f"{INVENTORY_KEY}.sops_file",
            f"required: the SOPS file holding {', '.join(SECRET_KEYS[kind])}",
        )
    return OffsiteSettings(
        host_name=host_name,
        destination=destination,
        sops_file=sops_file,
        limit_upload_kib=_integer(
            f"{INVENTORY_KEY}.limit_upload_kib", table.get("limit_upload_kib", 0), 0, 10**7
        ),
        operator=_operator(table.get("operator")),
        retention=_retention(table.get("retention")),
    )


def offsite_retention(data: Mapping[str, Any], settings: OffsiteSettings) -> dict[str, int]:
    """The off-site retention: the local policy's counts or longer (twice them by default).

    The local policy is the agent's (``agent_settings.retention``, with the agent's own
    defaults). An off-site count shorter than the local one is refused: the second place
    must never keep less history than the first.
    """
    from socle_agent.config import ConfigError, parse_config

    try:
        local_policy = parse_config(data.get("agent_settings", {}), check_paths=False).retention
    except ConfigError as error:
        raise InventoryDataError("agent_settings", "; ".join(error.problems)) from None
    local = {name: int(getattr(local_policy, name)) for name in RETENTION_KEYS}
    given = settings.retention or {}
    counts = {name: given.get(name, 2 * local[name]) for name in RETENTION_KEYS}
    for name in RETENTION_KEYS:
        if counts[name] < local[name]:
            raise InventoryDataError(
                f"{INVENTORY_KEY}.retention.{name}",
                f"{counts[name]} is fewer than the local {local[name]} "
                f"(agent_settings.retention.{name}): off-site keeps at least as much",
            )
    if counts["keep_last"] < 1:
        raise InventoryDataError(
            f"{INVENTORY_KEY}.retention.keep_last", "must be at least 1: the newest always stays"
        )
    return counts


def read_offsite_secrets(settings: OffsiteSettings, *, operator: bool = False) -> dict[str, str]:
    """Decrypt the destination's secrets (``SECRET_KEYS``), or with ``operator`` those of
    the operator's access (``OPERATOR_SECRET_KEYS``), on the operator's machine.

    Each is checked: the repository password is one line of at least
    ``MIN_PASSWORD_LENGTH`` characters, an SSH key is an OpenSSH private key.
    """
    if operator and settings.operator is None:
        raise InventoryDataError(
            f"{INVENTORY_KEY}.operator",
            "missing: the repository as the operator reaches it with full rights",
        )
    keys = OPERATOR_SECRET_KEYS[settings.operator.kind] if settings.operator and operator \
        else SECRET_KEYS[settings.kind]  # fmt: skip
    try:
        values = {key: decrypt_value(settings.sops_file, key) for key in keys}
    except SopsError as error:
        raise InventoryDataError(f"{INVENTORY_KEY}.sops_file", str(error)) from None
    for key, value in values.items():
        where = f"{key} in {settings.sops_file} ({INVENTORY_KEY}.sops_file)"
        if not value:
            raise InventoryDataError(f"{INVENTORY_KEY}.sops_file", f"{where} is empty")
        if key != "offsite_ssh_private_key" and "\n" in value:
            raise InventoryDataError(f"{INVENTORY_KEY}.sops_file", f"{where} is not one line")
    password = values["offsite_restic_password"]
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InventoryDataError(
            f"{INVENTORY_KEY}.sops_file",
            f"offsite_restic_password is shorter than {MIN_PASSWORD_LENGTH} characters: it is "
            "all that protects the off-site copies (make one: openssl rand -base64 32)",
        )
    ssh_key = values.get("offsite_ssh_private_key")
    if ssh_key is not None and not re.match(
        r"^-----BEGIN [A-Z ]*PRIVATE KEY-----\n[^-]+\n-----END [A-Z ]*PRIVATE KEY-----\n?$",
        ssh_key,
    ):
        raise InventoryDataError(
            f"{INVENTORY_KEY}.sops_file", "offsite_ssh_private_key is not an SSH private key"
        )
    return values
