"""Read a WireGuard interface: its key, configuration, systemd unit and live peers."""

from __future__ import annotations

import re
import shlex
from typing import TypedDict

from pyinfra.api import FactBase
from typing_extensions import override

INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.=+-]{1,15}$")


class WireguardPeerState(TypedDict):
    """One peer as the running interface sees it."""

    endpoint: str | None
    allowed_ips: list[str]
    latest_handshake: int
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int | None


class WireguardState(TypedDict):
    """The interface's files on disk, its systemd unit and what is running."""

    enabled: bool
    active: bool
    public_key: str | None
    config_sha256: str | None
    address: str | None
    listen_port: int | None
    running_public_key: str | None
    peers: dict[str, WireguardPeerState]


def interface_paths(interface: str) -> tuple[str, str]:
    """Return the configuration and private key paths of ``interface``.

    Raises ``ValueError`` for a name that is not a valid interface name, so the name
    can be used in paths and shell commands as it is.
    """
    if not INTERFACE_NAME.match(interface):
        raise ValueError(f"invalid WireGuard interface name: {interface!r}")
    return f"/etc/wireguard/{interface}.conf", f"/etc/wireguard/{interface}.key"


class WireguardInterface(FactBase[WireguardState]):
    """
    Returns the state of one WireGuard interface, managed by ``wg-quick@<interface>``.

    The private key is never read out: only the public key derived from the key file
    (``/etc/wireguard/<interface>.key``). Preshared keys are left out too.
    ``latest_handshake`` is a Unix time, 0 when the peer never completed one.

    + interface: the interface name, ``wg0`` by default

    .. code:: python

        {
            "enabled": True,
            "active": True,
            "public_key": "hk0W...=",
            "config_sha256": "5f1c...",
            "address": "10.8.0.1/24",
            "listen_port": 51820,
            "running_public_key": "hk0W...=",
            "peers": {
                "xTIB...=": {
                    "endpoint": "203.0.113.7:40112",
                    "allowed_ips": ["10.8.0.2/32"],
                    "latest_handshake": 1764166000,
                    "rx_bytes": 9260,
                    "tx_bytes": 11984,
                    "persistent_keepalive": None,
                },
            },
        }
    """

    @override
    def requires_command(self, *args, **kwargs) -> str:
        return "wg"

    @override
    @staticmethod
    def default() -> WireguardState:
        return {
            "enabled": False,
            "active": False,
            "public_key": None,
            "config_sha256": None,
            "address": None,
            "listen_port": None,
            "running_public_key": None,
            "peers": {},
        }

    @override
    def command(self, interface: str = "wg0") -> str:
        config, key = interface_paths(interface)
        unit = shlex.quote(f"wg-quick@{interface}")
        config, key = shlex.quote(config), shlex.quote(key)
        return "; ".join(
            (
                f"printf 'enabled %s\\n' \"$(systemctl is-enabled {unit} 2>/dev/null)\"",
                f"printf 'active %s\\n' \"$(systemctl is-active {unit} 2>/dev/null)\"",
                f"if [ -s {key} ]; then printf 'key %s\\n' \"$(wg pubkey < {key})\"; fi",
                f"if [ -f {config} ]; then "
                f"printf 'config %s\\n' \"$(sha256sum < {config} | cut -d ' ' -f 1)\"; fi",
                f"ip -o -4 addr show dev {interface} 2>/dev/null"
                " | awk '{print \"address\", $4}'",
                # The first line of the dump holds the private key: only fields 2 and 3 leave.
                f"wg show {interface} dump 2>/dev/null | awk -F '\\t' "
                "'NR == 1 {print \"interface\", $2, $3; next} "
                "{print \"peer\", $1, $3, $4, $5, $6, $7, $8}'",
            )
        )

    @override
    def process(self, output: list[str]) -> WireguardState:
        state = self.default()
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            fields = rest.split()
            if kind == "enabled":
                state["enabled"] = rest.strip() == "enabled"
            elif kind == "active":
                state["active"] = rest.strip() == "active"
            elif kind == "key" and fields:
                state["public_key"] = fields[0]
            elif kind == "config" and fields:
                state["config_sha256"] = fields[0]
            elif kind == "address" and fields:
                state["address"] = fields[0]
            elif kind == "interface" and len(fields) == 2:
                state["running_public_key"] = fields[0]
                state["listen_port"] = int(fields[1])
            elif kind == "peer" and len(fields) == 7:
                public_key, endpoint, allowed, handshake, rx, tx, keepalive = fields
                state["peers"][public_key] = {
                    "endpoint": None if endpoint == "(none)" else endpoint,
                    "allowed_ips": [] if allowed == "(none)" else allowed.split(","),
                    "latest_handshake": int(handshake),
                    "rx_bytes": int(rx),
                    "tx_bytes": int(tx),
                    "persistent_keepalive": None if keepalive == "off" else int(keepalive),
                }
        return state
