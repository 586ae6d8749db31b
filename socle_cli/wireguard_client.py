"""Write an admin's WireGuard client configuration from the inventory.

The configuration sends the VPN range and the cluster's pod and service ranges
through the tunnel, so PostgreSQL and the admin UIs, ClusterIP only, are reached
over the VPN. The server's public key comes from the inventory
(``wireguard_public_key``), else from the SOPS file holding its private key, else from
the node itself over SSH.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from socle import inventory_checks
from socle.sops_secrets import SopsError
from socle.wireguard_keys import public_key_of
from socle_cli.inventory import InventoryLookupError, host_with, load_hosts, node_session
from socle_cli.private_files import write_private

__all__ = ["ClientConfigError", "load_hosts", "write_client_config"]


class ClientConfigError(Exception):
    """The configuration cannot be written; the message says why and what to change."""


@dataclass(frozen=True)
class ClientConfig:
    """What a client configuration holds, the private key aside."""

    peer_name: str
    address: str
    server_public_key: str
    endpoint: str
    allowed_ips: tuple[str, ...]


def plan_client_config(
    data: Mapping[str, Any], peer_name: str, server_public_key: str
) -> ClientConfig:
    """Return the client configuration of ``peer_name`` for a host's inventory data.

    Raises ``InventoryDataError`` for bad data and ``ClientConfigError`` for an
    unknown peer or a missing endpoint.
    """
    inventory_checks.check_wireguard(data)
    peers = {peer["name"]: peer for peer in data.get("wireguard_peers", [])}
    if peer_name not in peers:
        known = ", ".join(sorted(peers)) or "none"
        raise ClientConfigError(
            f"no peer named {peer_name!r} in wireguard_peers (known peers: {known})"
        )
    endpoint_host = data.get("wireguard_endpoint") or data.get("ssh_hostname")
    if not endpoint_host:
        raise ClientConfigError("set wireguard_endpoint: the address peers connect to")
    port = data.get("wireguard_port", inventory_checks.DEFAULT_WIREGUARD_PORT)
    ranges = inventory_checks.cluster_ranges(data)
    return ClientConfig(
        peer_name=peer_name,
        address=f"{peers[peer_name]['address']}/32",
        server_public_key=server_public_key,
        endpoint=f"{endpoint_host}:{port}",
        allowed_ips=tuple(str(network) for network in ranges.values()),
    )


def render_client_config(config: ClientConfig, private_key: str | None) -> str:
    """Return the wg-quick configuration text for ``config``.

    Without ``private_key`` the file says where the admin's own key goes.
    """
    key_line = (
        f"PrivateKey = {private_key}"
        if private_key
        else f"# PrivateKey = <the private key of {config.peer_name}; socle never stores it>"
    )
    return "\n".join(
        [
            f"# WireGuard client configuration of {config.peer_name}, written by socle.",
            "[Interface]",
            key_line,
            f"Address = {config.address}",
            "",
            "[Peer]",
            f"PublicKey = {config.server_public_key}",
            f"Endpoint = {config.endpoint}",
            f"AllowedIPs = {', '.join(config.allowed_ips)}",
            # Keeps NAT mappings on the admin's side open so the server can reach back.
            "PersistentKeepalive = 25",
            "",
        ]
    )


def read_private_key(path: Path, expected_public_key: str) -> str:
    """Return the private key in ``path`` after checking it belongs to the peer."""
    key = path.read_text().strip()
    try:
        public = public_key_of(key)
    except ValueError as error:
        raise ClientConfigError(f"{path} does not hold a WireGuard private key: {error}") from None
    if public != expected_public_key:
        raise ClientConfigError(
            f"the key in {path} has public key {public}, but the inventory gives "
            f"{expected_public_key} for this peer"
        )
    return key


def fetch_server_public_key(inventory: Path, host_name: str, interface: str) -> str | None:
    """Read the server's public key from the node over SSH, as a deploy would."""
    from facts.wireguard_state import WireguardInterface

    try:
        with node_session(inventory, host_name) as node:
            result = node.fact(WireguardInterface, interface=interface)
    except InventoryLookupError as error:
        raise ClientConfigError(f"{error}, to read its public key") from None
    key: str | None = result["public_key"]
    return key


def server_public_key(data: Mapping[str, Any], inventory: Path, host_name: str) -> str:
    """Return the server's WireGuard public key: inventory, SOPS file, or the node."""
    if data.get("wireguard_public_key"):
        return str(data["wireguard_public_key"])
    if data.get("wireguard_private_key_sops"):
        from socle.sops_secrets import decrypt_value

        private = decrypt_value(data["wireguard_private_key_sops"], "wireguard_private_key")
        return public_key_of(private)
    interface = data.get("wireguard_interface", inventory_checks.DEFAULT_INTERFACE)
    key = fetch_server_public_key(inventory, host_name, interface)
    if key is None:
        raise ClientConfigError(
            f"{host_name} has no WireGuard key yet: run deploys/wireguard.py first, "
            "or set wireguard_public_key"
        )
    return key


def write_client_config(
    inventory: Path,
    peer_name: str,
    host_name: str | None = None,
    private_key_file: Path | None = None,
) -> str:
    """Return the client configuration of ``peer_name`` for the inventory's VPN host."""
    try:
        hosts = load_hosts(inventory)
        host_name, data = host_with(hosts, "wireguard_address", host_name, inventory)
    except InventoryLookupError as error:
        raise ClientConfigError(str(error)) from None
    inventory_checks.check_wireguard(data)
    peer_keys = {peer["name"]: peer["public_key"] for peer in data.get("wireguard_peers", [])}
    private_key = None
    if private_key_file is not None and peer_name in peer_keys:
        private_key = read_private_key(private_key_file, peer_keys[peer_name])
    config = plan_client_config(data, peer_name, "")
    config = ClientConfig(
        peer_name=config.peer_name,
        address=config.address,
        server_public_key=server_public_key(data, inventory, host_name),
        endpoint=config.endpoint,
        allowed_ips=config.allowed_ips,
    )
    return render_client_config(config, private_key)


def _client_config_command(args: argparse.Namespace) -> int:
    from pyinfra.api.exceptions import PyinfraError


    try:
        text = write_client_config(
            Path(args.inventory), args.peer, args.host, args.private_key_file
        )
    except (ClientConfigError, InventoryLookupError, PyinfraError, SopsError, OSError) as error:
        print(f"socle: {error}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # The file may hold the admin's private key: readable by its owner only.
    write_private(args.output, text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `wireguard client-config` to the `socle` command line."""
    wireguard = commands.add_parser("wireguard", help="WireGuard VPN")
    wireguard_commands = wireguard.add_subparsers(dest="wireguard_command")
    client = wireguard_commands.add_parser(
        "client-config",
        help="write an admin's WireGuard client configuration from the inventory",
        description=(
            "Write the wg-quick configuration of one peer of the inventory: the server's "
            "endpoint and public key, AllowedIPs covering the VPN, pod and service ranges."
        ),
    )
    client.add_argument("--inventory", required=True, help="e.g. inventories/prod.py")
    client.add_argument("--peer", required=True, help="a name from wireguard_peers")
    client.add_argument("--host", help="the VPN host, when the inventory has several")
    client.add_argument(
        "--private-key-file",
        type=Path,
        help="the peer's private key, checked against its public key in the inventory",
    )
    client.add_argument("--output", "-o", type=Path, help="file to write (mode 0600)")
    client.set_defaults(handler=_client_config_command)
