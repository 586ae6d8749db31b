"""Read an inventory file the way the `pyinfra` command reads it, on the operator's machine.

Example::

    hosts = load_hosts(Path("inventories/prod.py"))
    name, data = host_with(hosts, "ovh_vps", None, Path("inventories/prod.py"))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class InventoryLookupError(Exception):
    """The inventory cannot be read, or does not name the host wanted."""


def load_inventory(inventory: Path) -> Any:
    """Return pyinfra's ``Inventory`` for ``inventory`` (group data included)."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    if not inventory.exists():
        raise InventoryLookupError(f"no inventory at {inventory}")
    # Inventory files are read the way the pyinfra command reads them, in a state.
    with ctx_state.use(State()):
        return make_inventory(str(inventory), cwd=os.getcwd())


def load_hosts(inventory: Path) -> dict[str, dict[str, Any]]:
    """Return each host's merged data (host, groups, group_data files) from an inventory."""
    return {host.name: host.data.dict() for host in load_inventory(inventory)}


def host_with(
    hosts: dict[str, dict[str, Any]], key: str, host_name: str | None, inventory: Path
) -> tuple[str, dict[str, Any]]:
    """Return the host whose data holds ``key``: ``host_name``, or the only one that has it."""
    having = {name: data for name, data in hosts.items() if data.get(key) is not None}
    if host_name is None:
        if len(having) != 1:
            names = ", ".join(sorted(having)) or "none"
            raise InventoryLookupError(f"choose the host with --host (hosts with {key}: {names})")
        host_name = next(iter(having))
    if host_name not in having:
        raise InventoryLookupError(f"no host {host_name!r} with {key} in {inventory}")
    return host_name, having[host_name]
