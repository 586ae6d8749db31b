"""Manage a WireGuard interface run by wg-quick under systemd: key, peers, service."""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import (
    HiddenValue,
    OperationValueError,
    QuoteString,
    StringCommand,
    operation,
)

from facts.wireguard_state import WireguardInterface, interface_paths
from operations.private_upload import PrivateUploadCommand
from operations.text_files import write_command
from socle.wireguard_keys import public_key_of


@dataclass(frozen=True)
class WireguardPeer:
    """A peer of the server: who it is, its public key and its address in the VPN.

    + name: a label, written as a comment in the configuration
    + public_key: the peer's WireGuard public key (base64)
    + address: the peer's single VPN address, e.g. ``10.8.0.2``
    """

    name: str
    public_key: str
    address: str


def render_config(
    interface: str, address: str, listen_port: int, peers: list[WireguardPeer]
) -> str:
    """Return the wg-quick configuration of the server side of ``interface``.

    The private key is not in it: wg-quick loads it from the key file after bringing
    the interface up, so this file holds nothing secret and can be shown in diffs.
    """
    _, key_path = interface_paths(interface)
    lines = [
        "# Managed by socle: changes made here are overwritten.",
        "[Interface]",
        f"Address = {address}",
        f"ListenPort = {listen_port}",
        f"PostUp = wg set %i private-key {key_path}",
    ]
    for peer in peers:
        lines += [
            "",
            "[Peer]",
            f"# {peer.name}",
            f"PublicKey = {peer.public_key}",
            f"AllowedIPs = {peer.address}/32",
        ]
    return "\n".join(lines) + "\n"


@operation()
def interface(
    address: str,
    listen_port: int = 51820,
    peers: list[WireguardPeer] | None = None,
    private_key: HiddenValue | str | None = None,
    interface: str = "wg0",
) -> Generator[StringCommand | PrivateUploadCommand, None, None]:
    """
    Run a WireGuard interface with the given address, port and peers, enabled at boot.

    + address: the server's address and VPN range, e.g. ``10.8.0.1/24``
    + listen_port: UDP port to listen on
    + peers: the ``WireguardPeer`` values allowed to connect
    + private_key: the server's private key (give a ``HiddenValue``); when ``None``
      a key is generated on the node the first time and never replaced afterwards
    + interface: the interface name, ``wg0`` by default

    The configuration goes to ``/etc/wireguard/<interface>.conf`` without the private
    key, which lives alone in ``/etc/wireguard/<interface>.key`` (mode 0600). The
    interface is restarted only when its key, configuration or running state differ
    from what is wanted.

    **Example:**

    .. code:: python

        wireguard.interface(
            name="VPN wg0",
            address="10.8.0.1/24",
            listen_port=51820,
            peers=[WireguardPeer(name="alice", public_key="xTIB...=", address="10.8.0.2")],
        )
    """
    try:
        config_path, key_path = interface_paths(interface)
    except ValueError as error:
        raise OperationValueError(str(error)) from error
    peers = peers or []
    secret: HiddenValue | None = None
    wanted_public_key: str | None = None
    if private_key is not None:
        secret = private_key if isinstance(private_key, HiddenValue) else HiddenValue(private_key)
        try:
            wanted_public_key = public_key_of(secret.unmask())
        except ValueError as error:
            raise OperationValueError(f"invalid WireGuard private key: {error}") from None
    config = render_config(interface, address, listen_port, peers)
    unit = f"wg-quick@{interface}"

    state = host.get_fact(WireguardInterface, interface=interface)
    key_changed = False

    if secret is not None and state["public_key"] != wanted_public_key:
        key_changed = True
        # Never in a command line (the node's process list would show it), never readable
        # by another local user on its way (operations.private_upload).
        yield StringCommand("umask 077 && mkdir -p /etc/wireguard")
        yield PrivateUploadCommand((secret.unmask() + "\n").encode(), key_path)
    elif secret is None and state["public_key"] is None:
        key_changed = True
        temp = key_path + ".new"
        # The test in the command keeps an existing key even if the fact was stale.
        yield StringCommand(
            "umask 077 && mkdir -p /etc/wireguard && if [ ! -s",
            QuoteString(key_path),
            "]; then wg genkey >",
            QuoteString(temp),
            "&& mv -f",
            QuoteString(temp),
            QuoteString(key_path),
            "; fi",
        )
    else:
        wanted_public_key = state["public_key"]

    config_changed = state["config_sha256"] != hashlib.sha256(config.encode()).hexdigest()
    if config_changed:
        yield write_command(config_path, config, mode="600")

    if not state["enabled"]:
        yield StringCommand("systemctl enable", QuoteString(unit))

    running_peers = {key: sorted(peer["allowed_ips"]) for key, peer in state["peers"].items()}
    wanted_peers = {peer.public_key: [f"{peer.address}/32"] for peer in peers}
    running_as_wanted = (
        state["address"] == address
        and state["listen_port"] == listen_port
        and state["running_public_key"] == wanted_public_key
        and running_peers == wanted_peers
    )
    if not state["active"]:
        yield StringCommand("systemctl start", QuoteString(unit))
    elif key_changed or config_changed or not running_as_wanted:
        yield StringCommand("systemctl restart", QuoteString(unit))
    elif state["enabled"]:
        host.noop(f"WireGuard {interface} runs with the wanted key, configuration and peers")
