"""Read a pyinfra inventory as the `pyinfra` command does, and reach one of its hosts.

Example::

    hosts = load_hosts(Path("inventories/prod.py"))
    name, data = vpn_host(hosts, None)            # the one host with a VPN
    with connected(Path("inventories/prod.py"), name) as (state, node):
        ...                                       # facts, or commands over SSH
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class InventoryError(Exception):
    """The inventory cannot be read or names no suitable host; the message says why."""


def load_inventory(inventory: Path) -> Any:
    """Return pyinfra's Inventory for the file ``inventory``, with its group data."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    if not inventory.exists():
        raise InventoryError(f"no inventory at {inventory}")
    # Inventory files are read the way the pyinfra command reads them, in a state.
    with ctx_state.use(State()):
        return make_inventory(str(inventory), cwd=os.getcwd())


def load_hosts(inventory: Path) -> dict[str, dict[str, Any]]:
    """Return each host's merged data (host, groups, group_data files) from an inventory."""
    return {host.name: host.data.dict() for host in load_inventory(inventory)}


def vpn_host(
    hosts: Mapping[str, dict[str, Any]], host_name: str | None, inventory: Path | str = ""
) -> tuple[str, dict[str, Any]]:
    """Return the host named ``host_name``, or the only host with ``wireguard_address``."""
    with_vpn = {name: data for name, data in hosts.items() if data.get("wireguard_address")}
    if host_name is None:
        if len(with_vpn) != 1:
            names = ", ".join(sorted(with_vpn)) or "none"
            raise InventoryError(f"choose the VPN host with --host (hosts with a VPN: {names})")
        host_name = next(iter(with_vpn))
    if host_name not in with_vpn:
        raise InventoryError(f"no host {host_name!r} with wireguard_address in {inventory}")
    return host_name, with_vpn[host_name]


@contextmanager
def connected(inventory: Path, host_name: str) -> Iterator[tuple[Any, Any]]:
    """Connect to ``host_name`` of ``inventory`` over SSH, as a deploy would; yield
    pyinfra's ``(state, host)`` and disconnect afterwards."""
    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all, disconnect_all

    loaded = load_inventory(inventory)
    state = State(loaded, Config())
    connect_all(state)
    try:
        node = loaded.get_host(host_name)
        if not node.connected:
            raise InventoryError(f"cannot connect to {host_name}")
        yield state, node
    finally:
        disconnect_all(state)
