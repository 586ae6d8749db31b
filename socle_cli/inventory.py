"""Read an inventory the way the `pyinfra` command does, and open SSH sessions to its hosts.

Commands of `socle` that look at a node (a public key, a kubeconfig, the Go/No-Go checks)
reach it exactly as a deploy would: same inventory, same SSH settings, same sudo.

Example::

    hosts = load_hosts(Path("inventories/prod.py"))
    name, data = host_with(hosts, "ovh_vps", None, Path("inventories/prod.py"))
    with node_session(Path("inventories/prod.py"), "vps") as node:
        ok, output = node.run("wg show wg0 latest-handshakes", sudo=True)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass
class NodeSession:
    """An open SSH session to one host of an inventory."""

    state: Any
    host: Any

    @property
    def data(self) -> dict[str, Any]:
        """The host's merged inventory data."""
        return dict(self.host.data.dict())

    def run(self, command: str, *, sudo: bool = False, timeout: int = 30) -> tuple[bool, str]:
        """Run ``command`` (a shell string) on the host; return success and its stdout."""
        from pyinfra.api import StringCommand

        ok, output = self.host.run_shell_command(
            StringCommand(command), _sudo=sudo, _timeout=timeout
        )
        return bool(ok), output.stdout

    def fact(self, fact: Any, **kwargs: Any) -> Any:
        """Read one of the project's (or pyinfra's) facts from the host."""
        from pyinfra.api.facts import get_fact

        return get_fact(self.state, self.host, fact, kwargs=kwargs)


@contextmanager
def node_session(inventory: Path, host_name: str | None = None) -> Iterator[NodeSession]:
    """Connect to ``host_name`` of ``inventory`` (its only host when ``None``)."""
    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all, disconnect_all

    loaded = load_inventory(inventory)
    names = [host.name for host in loaded]
    if host_name is None:
        if len(names) != 1:
            raise InventoryLookupError(f"choose a host with --host (hosts: {', '.join(names)})")
        host_name = names[0]
    if host_name not in names:
        raise InventoryLookupError(f"no host {host_name!r} in {inventory}")
    state = State(loaded, Config())
    connect_all(state)
    try:
        node = loaded.get_host(host_name)
        if not node.connected:
            raise InventoryLookupError(f"cannot connect to {host_name} over SSH")
        yield NodeSession(state, node)
    finally:
        disconnect_all(state)
