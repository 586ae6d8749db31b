"""Lock-out guards: inventory data checked before a deploy changes anything on a host.

Each check is a pure function of the inventory data (and, for SSH, of the keys the host
already holds). A refusal raises ``InventoryDataError`` naming the inventory key at
fault; it is a pyinfra ``DeployError``, so the command line stops with that message
before any operation runs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pyinfra.api.exceptions import DeployError

from socle.wireguard_keys import decode_key

_INTERFACE = re.compile(r"^[A-Za-z0-9_.=+-]{1,15}$")
_PEER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

DEFAULT_SSH_PORT = 22
DEFAULT_PUBLIC_TCP = (22, 80, 443)
DEFAULT_WIREGUARD_PORT = 51820
DEFAULT_INTERFACE = "wg0"


class InventoryDataError(DeployError):
    """Inventory data that would break the host or lock the operator out."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"inventory key {key!r}: {problem}")


def _port(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InventoryDataError(key, f"{value!r} is not a port number (1-65535)")
    return value


def _ports(key: str, values: Any) -> list[int]:
    if not isinstance(values, list | tuple):
        raise InventoryDataError(key, f"expected a list of port numbers, got {values!r}")
    return [_port(f"{key}[{index}]", value) for index, value in enumerate(values)]


def _network(key: str, value: Any) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except (ValueError, TypeError) as error:
        raise InventoryDataError(key, f"{value!r} is not an IPv4 network: {error}") from None
    if network.prefixlen > 30:
        raise InventoryDataError(key, f"{value} is too small to hold hosts")
    return network


def ssh_port(data: Mapping[str, Any]) -> int:
    """Return the SSH port from ``ssh_port`` (22 when absent), checked."""
    return _port("ssh_port", data.get("ssh_port", DEFAULT_SSH_PORT))


def deploy_user(data: Mapping[str, Any]) -> str:
    """Return the account the operator logs in with: ``ssh_deploy_user``, else ``ssh_user``."""
    key = "ssh_deploy_user" if data.get("ssh_deploy_user") else "ssh_user"
    user = data.get(key)
    if not isinstance(user, str) or not user:
        raise InventoryDataError(
            "ssh_deploy_user", "no deploy user: set ssh_deploy_user (or ssh_user)"
        )
    return user


def check_ssh_access(
    data: Mapping[str, Any], user: str, authorized_keys: Iterable[str], host_name: str
) -> None:
    """Refuse to turn password login off while ``user`` has no authorized key on the host.

    ``ssh_password_login`` (default ``False``) decides whether password login stays on.

    >>> check_ssh_access({"ssh_password_login": False}, "ubuntu", [], "vps")
    Traceback (most recent call last):
    ...
    socle.inventory_checks.InventoryDataError: inventory key 'ssh_password_login': ...
    """
    password_login = data.get("ssh_password_login", False)
    if not isinstance(password_login, bool):
        raise InventoryDataError(
            "ssh_password_login", f"expected True or False, got {password_login!r}"
        )
    if not password_login and not list(authorized_keys):
        raise InventoryDataError(
            "ssh_password_login",
            f"is False but the deploy user {user!r} (ssh_deploy_user) has no key in "
            f"~/.ssh/authorized_keys on {host_name}: refusing to disable password login, "
            "which would lock the operator out",
        )


def check_firewall(data: Mapping[str, Any]) -> None:
    """Refuse a firewall that would cut SSH or expose an admin port publicly.

    Checks ``ufw_public_tcp`` (must include ``ssh_port``), ``wireguard_port`` and
    ``wireguard_admin_tcp_ports`` (none of them may also be public).
    """
    port = ssh_port(data)
    public = _ports("ufw_public_tcp", data.get("ufw_public_tcp", list(DEFAULT_PUBLIC_TCP)))
    if port not in public:
        raise InventoryDataError(
            "ufw_public_tcp",
            f"{public} does not include the SSH port {port} (ssh_port): refusing to enable "
            "UFW, it would cut the SSH connection",
        )
    _port("wireguard_port", data.get("wireguard_port", DEFAULT_WIREGUARD_PORT))
    admin = _ports("wireguard_admin_tcp_ports", data.get("wireguard_admin_tcp_ports", []))
    for index, admin_port in enumerate(admin):
        if admin_port in public:
            raise InventoryDataError(
                f"wireguard_admin_tcp_ports[{index}]",
                f"port {admin_port} is also public in ufw_public_tcp; admin ports are "
                "reachable over the VPN only",
            )
    interface = data.get("wireguard_interface", DEFAULT_INTERFACE)
    if not isinstance(interface, str) or not _INTERFACE.match(interface):
        raise InventoryDataError("wireguard_interface", f"{interface!r} is not an interface name")
    cluster_ranges(data)


def cluster_ranges(data: Mapping[str, Any]) -> dict[str, ipaddress.IPv4Network]:
    """Return the VPN, pod and service ranges by inventory key, refusing overlaps.

    Keys: ``wireguard_address`` (the server's address with the VPN's prefix, e.g.
    ``10.8.0.1/24``), ``cluster_pod_cidr``, ``cluster_service_cidr``.
    """
    ranges = {"wireguard_address": vpn_interface(data).network}
    for key in ("cluster_pod_cidr", "cluster_service_cidr"):
        if key not in data:
            raise InventoryDataError(key, "missing")
        ranges[key] = _network(key, data[key])
    names = list(ranges)
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            if ranges[first].overlaps(ranges[second]):
                raise InventoryDataError(
                    second,
                    f"{ranges[second]} overlaps {ranges[first]} ({first}); "
                    "the VPN, pod and service ranges must be disjoint",
                )
    return ranges


def vpn_interface(data: Mapping[str, Any]) -> ipaddress.IPv4Interface:
    """Return the server's VPN address from ``wireguard_address``, checked."""
    value = data.get("wireguard_address")
    try:
        address = ipaddress.IPv4Interface(value)
    except (ValueError, TypeError) as error:
        raise InventoryDataError(
            "wireguard_address", f"{value!r} is not an IPv4 address with a prefix: {error}"
        ) from None
    network = address.network
    if network.prefixlen > 30:
        raise InventoryDataError("wireguard_address", f"{value} leaves no room for peers")
    if address.ip in (network.network_address, network.broadcast_address):
        raise InventoryDataError(
            "wireguard_address", f"{address.ip} is the network or broadcast address of {network}"
        )
    return address


def check_wireguard(data: Mapping[str, Any]) -> None:
    """Refuse malformed WireGuard data: keys, peer names and addresses, ranges.

    Checks ``wireguard_address``, ``wireguard_port``, ``wireguard_public_key`` (if
    given) and each ``wireguard_peers[i]`` (``name``, ``public_key``, ``address``:
    well formed, unique, inside the VPN range and not the server's address).
    """
    server = vpn_interface(data)
    cluster_ranges(data)
    _port("wireguard_port", data.get("wireguard_port", DEFAULT_WIREGUARD_PORT))
    if data.get("wireguard_public_key") is not None:
        _key("wireguard_public_key", data["wireguard_public_key"])
    peers = data.get("wireguard_peers", [])
    if not isinstance(peers, list | tuple):
        raise InventoryDataError("wireguard_peers", f"expected a list of peers, got {peers!r}")
    names: dict[str, int] = {}
    keys: dict[str, int] = {}
    addresses: dict[ipaddress.IPv4Address, int] = {}
    for index, peer in enumerate(peers):
        where = f"wireguard_peers[{index}]"
        if not isinstance(peer, Mapping):
            raise InventoryDataError(where, f"expected a mapping, got {peer!r}")
        for field in ("name", "public_key", "address"):
            if field not in peer:
                raise InventoryDataError(f"{where}.{field}", "missing")
        name = peer["name"]
        if not isinstance(name, str) or not _PEER_NAME.match(name):
            raise InventoryDataError(f"{where}.name", f"{name!r} is not a valid peer name")
        if name in names:
            raise InventoryDataError(
                f"{where}.name", f"{name!r} is already used by wireguard_peers[{names[name]}]"
            )
        names[name] = index
        key = _key(f"{where}.public_key", peer["public_key"])
        if key in keys:
            raise InventoryDataError(
                f"{where}.public_key", f"already used by wireguard_peers[{keys[key]}]"
            )
        keys[key] = index
        address = _peer_address(f"{where}.address", peer["address"], server)
        if address in addresses:
            raise InventoryDataError(
                f"{where}.address",
                f"{address} is already used by wireguard_peers[{addresses[address]}]",
            )
        addresses[address] = index


def _key(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InventoryDataError(key, f"{value!r} is not a WireGuard key")
    try:
        decode_key(value)
    except ValueError as error:
        raise InventoryDataError(key, f"{value!r} is not a WireGuard key: {error}") from None
    return value.strip()


def _peer_address(
    key: str, value: Any, server: ipaddress.IPv4Interface
) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.IPv4Address(value)
    except (ValueError, TypeError):
        raise InventoryDataError(key, f"{value!r} is not a single IPv4 address") from None
    network = server.network
    if address not in network:
        raise InventoryDataError(
            key, f"{address} is outside the VPN range {network} (wireguard_address)"
        )
    if address in (network.network_address, network.broadcast_address):
        raise InventoryDataError(key, f"{address} is the network or broadcast address")
    if address == server.ip:
        raise InventoryDataError(key, f"{address} is the server's own VPN address")
    return address
