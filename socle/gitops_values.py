"""The values of the root Application (gitops/root): what Argo CD needs from outside git.

Git holds the platform's manifests and chart values; two things come from elsewhere and
reach the cluster through the root Application, which ``deploys/argocd.py`` writes:

- the pinned versions (``versions.toml``): chart versions and repositories, the
  PostgreSQL image by digest;
- the inventory's data: the repository Argo CD follows, the node's VPN address, where
  the agent's metrics are, and Alertmanager's mail and heartbeat settings.

Every value is checked here, before anything on a host changes; a refusal raises
``InventoryDataError`` naming the inventory key.

Example::

    values = root_values(host.data.dict(), load_versions())
    values["charts"]["kubePrometheusStack"]["version"]      # '88.5.3'
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pyinfra.api.exceptions import DeployError

from socle.inventory_checks import InventoryDataError, vpn_interface
from socle.versions import Versions, VersionsError, host_versions_file, load_versions

CHART_KEYS = {
    "argoCd": "argo-cd",
    "kubePrometheusStack": "kube-prometheus-stack",
    "prometheusPostgresExporter": "prometheus-postgres-exporter",
}
DEFAULT_REVISION = "main"
DEFAULT_AGENT_METRICS_PORT = 9464
# Noise control: production repeats a still-firing alert after hours, not minutes.
DEFAULT_TIMING = {
    "group_wait": "30s",
    "group_interval": "5m",
    "repeat_interval": "12h",
    "heartbeat_interval": "1m",
}

_EMAIL = re.compile(
    r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$|^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+$"
)
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d))+$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_SCP_URL = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._/~-]+$")
_SAFE_TEXT = re.compile(r"^[^\s'\"\\{}]+$")


def _mapping(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InventoryDataError(key, f"expected a mapping, got {value!r}")
    return value


def _text(key: str, value: Any) -> str:
    # Nothing that could break out of the YAML or template it lands in.
    if not isinstance(value, str) or not _SAFE_TEXT.match(value):
        raise InventoryDataError(key, f"{value!r} is empty or holds spaces, quotes or braces")
    return value


def _email(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise InventoryDataError(key, f"{value!r} is not a mail address")
    return value


def _http_url(key: str, value: Any) -> str:
    url = _text(key, value)
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InventoryDataError(key, f"{url!r} is not an http(s) URL")
    return url


def _duration(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _DURATION.match(value):
        raise InventoryDataError(key, f"{value!r} is not a duration such as 30s, 5m or 12h")
    return value


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus-style duration such as ``1h30m`` or ``500ms``.

    >>> duration_seconds("1h30m")
    5400.0
    """
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 12h")
    return float(sum(int(number) * units[unit] for number, unit in parts))


def repository(data: Mapping[str, Any]) -> dict[str, str]:
    """The repository Argo CD follows: ``gitops_repository`` ``url`` and ``revision``."""
    repo = _mapping("gitops_repository", data.get("gitops_repository"))
    url = repo.get("url")
    if (
        not isinstance(url, str)
        or not (
            (urlsplit(url).scheme in ("https", "ssh") and urlsplit(url).hostname)
            or _SCP_URL.match(url)
        )
        or not _SAFE_TEXT.match(url)
    ):
        raise InventoryDataError(
            "gitops_repository.url", f"{url!r} is not an https://, ssh:// or user@host:path URL"
        )
    revision = repo.get("revision", DEFAULT_REVISION)
    if not isinstance(revision, str) or not _REVISION.match(revision) or revision == "HEAD":
        raise InventoryDataError(
            "gitops_repository.revision", f"{revision!r} is not a branch or tag name"
        )
    return {"url": url, "revision": revision}


def alerting(data: Mapping[str, Any]) -> dict[str, Any]:
    """Alertmanager's mail and heartbeat settings from the inventory key ``alerting``.

    Keys: ``smarthost`` (host:port), ``from``, ``to`` (a list), ``username`` (optional:
    with it, ``password_sops`` names the SOPS file and key of the password),
    ``require_tls`` (default true), ``heartbeat_url`` (the dead man's switch, required),
    and optionally ``group_wait``, ``group_interval``, ``repeat_interval``,
    ``heartbeat_interval``.
    """
    settings = _mapping("alerting", data.get("alerting"))
    smarthost = settings.get("smarthost")
    if not isinstance(smarthost, str) or not _HOST_PORT.match(smarthost):
        raise InventoryDataError("alerting.smarthost", f"{smarthost!r} is not host:port")
    recipients = settings.get("to")
    if not isinstance(recipients, list | tuple) or not recipients:
        raise InventoryDataError("alerting.to", f"expected a list of addresses, got {recipients!r}")
    require_tls = settings.get("require_tls", True)
    if not isinstance(require_tls, bool):
        raise InventoryDataError(
            "alerting.require_tls", f"expected true or false, got {require_tls!r}"
        )
    values: dict[str, Any] = {
        "smarthost": smarthost,
        "from": _email("alerting.from", settings.get("from")),
        "to": [_email(f"alerting.to[{i}]", address) for i, address in enumerate(recipients)],
        "username": "",
        "requireTls": require_tls,
        "heartbeatUrl": _http_url("alerting.heartbeat_url", settings.get("heartbeat_url")),
    }
    if settings.get("username") is not None:
        values["username"] = _text("alerting.username", settings["username"])
        if settings.get("password_sops") is None:
            raise InventoryDataError(
                "alerting.password_sops", "missing: a username needs its password from SOPS"
            )
        sops_reference("alerting.password_sops", settings["password_sops"])
    for key, default in DEFAULT_TIMING.items():
        value = _duration(f"alerting.{key}", settings.get(key, default))
        camel = key.split("_")[0] + "".join(part.title() for part in key.split("_")[1:])
        values[camel] = value
    if duration_seconds(values["repeatInterval"]) < duration_seconds(values["groupInterval"]):
        raise InventoryDataError(
            "alerting.repeat_interval",
            "is shorter than group_interval: mails would repeat at every group change",
        )
    return values


def sops_reference(key: str, value: Any) -> dict[str, str]:
    """A ``{"file": ..., "key": ...}`` naming one value of a SOPS file, checked."""
    reference = _mapping(key, value)
    for field in ("file", "key"):
        if not isinstance(reference.get(field), str) or not reference[field]:
            raise InventoryDataError(f"{key}.{field}", "missing")
    return {"file": reference["file"], "key": reference["key"]}


def agent_metrics_target(data: Mapping[str, Any]) -> str:
    """``host:port`` where the cluster's Prometheus scrapes the node agent.

    The agent's own ``metrics.listen`` when it is an address of the node, else the
    node's VPN address; never a wildcard, never the public address (the firewall lets
    the cluster reach the port on the VPN address only).
    """
    metrics = _mapping("agent_settings.metrics", data.get("agent_settings", {}).get("metrics", {}))
    vpn = vpn_interface(data)
    listen = metrics.get("listen", str(vpn.ip))
    port = metrics.get("port", DEFAULT_AGENT_METRICS_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InventoryDataError("agent_settings.metrics.port", f"{port!r} is not a port")
    try:
        address = ipaddress.IPv4Address(listen)
    except ValueError:
        raise InventoryDataError(
            "agent_settings.metrics.listen", f"{listen!r} is not an IPv4 address"
        ) from None
    if address != vpn.ip:
        raise InventoryDataError(
            "agent_settings.metrics.listen",
            f"{address} is not the node's VPN address {vpn.ip} (wireguard_address): the "
            "cluster's Prometheus scrapes the agent there, and only there",
        )
    return f"{address}:{port}"


class PinRefused(DeployError):
    """The versions file is wrong, or a pin it holds is not confirmed: nothing changes."""


def host_versions(data: Mapping[str, Any]) -> Versions:
    """The host's pinned versions (``socle_versions_file``, else versions.toml), or
    ``PinRefused`` saying what is wrong with the file."""
    try:
        return load_versions(host_versions_file(data))
    except VersionsError as error:
        raise PinRefused(str(error)) from None


def root_values(data: Mapping[str, Any], versions: Versions) -> dict[str, Any]:
    """The root Application's ``valuesObject``, from inventory ``data`` and ``versions``.

    Raises ``InventoryDataError`` for bad inventory data and ``UnconfirmedPin`` when the
    PostgreSQL image's digest is not confirmed yet.
    """
    vpn = vpn_interface(data)
    charts = {}
    for key, name in CHART_KEYS.items():
        pin = versions.charts.get(name)
        if pin is None:
            raise VersionsError(f"{versions.source}: no [charts.{name}] pin")
        charts[key] = {"repository": pin.repository, "version": pin.version}
    return {
        "repository": repository(data),
        "charts": charts,
        "postgresql": {"image": versions.postgresql.require_reference()},
        "node": {"vpnAddress": str(vpn.ip), "vpnNetwork": str(vpn.network)},
        "agent": {"metricsTarget": agent_metrics_target(data)},
        "alerting": alerting(data),
    }


def repository_credentials(data: Mapping[str, Any]) -> dict[str, str] | None:
    """Argo CD's credentials for a private ``gitops_repository``, decrypted from SOPS.

    ``username`` with ``password_sops`` (an access token), or ``ssh_private_key_sops``;
    ``None`` for a public repository. The values are returned to the caller only.
    """
    from socle.sops_secrets import decrypt_value

    repo = _mapping("gitops_repository", data.get("gitops_repository"))
    if repo.get("ssh_private_key_sops") is not None:
        key = sops_reference("gitops_repository.ssh_private_key_sops", repo["ssh_private_key_sops"])
        return {"sshPrivateKey": decrypt_value(key["file"], key["key"]) + "\n"}
    if repo.get("password_sops") is not None:
        key = sops_reference("gitops_repository.password_sops", repo["password_sops"])
        username = _text("gitops_repository.username", repo.get("username"))
        return {"username": username, "password": decrypt_value(key["file"], key["key"])}
    return None


def sops_value(data: Mapping[str, Any], key: str) -> str:
    """Decrypt the SOPS value an inventory reference (``{"file", "key"}``) at ``key`` names.

    ``key`` is dotted (``alerting.password_sops``); the value goes to the caller only.
    """
    from socle.sops_secrets import decrypt_value

    node: Any = data
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    reference = sops_reference(key, node)
    return decrypt_value(reference["file"], reference["key"])
