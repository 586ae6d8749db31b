"""Read an inventory the way the `pyinfra` command does, and open SSH sessions to its hosts.

Commands of `socle` that look at a node (a public key, a kubeconfig, the Go/No-Go checks)
reach it exactly as a deploy would: same inventory, same SSH settings, same sudo.

Example::

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


class InventoryHostError(Exception):
    """The inventory or the host cannot be used; the message says why."""


def load_inventory(inventory: Path) -> Any:
    """Return pyinfra's ``Inventory`` for ``inventory``, read as the pyinfra command reads it."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    if not inventory.exists():
        raise InventoryHostError(f"no inventory at {inventory}")
    with ctx_state.use(State()):
        return make_inventory(str(inventory), cwd=os.getcwd())


def load_hosts(inventory: Path) -> dict[str, dict[str, Any]]:
    """Return each host's merged data (host, groups, group_data files) from an inventory."""
    return {host.name: host.data.dict() for host in load_inventory(inventory)}


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
            raise InventoryHostError(f"choose a host with --host (hosts: {', '.join(names)})")
        host_name = names[0]
    if host_name not in names:
        raise InventoryHostError(f"no host {host_name!r} in {inventory}")
    state = State(loaded, Config())
    connect_all(state)
    try:
        node = loaded.get_host(host_name)
        if not node.connected:
            raise InventoryHostError(f"cannot connect to {host_name} over SSH")
        yield NodeSession(state, node)
    finally:
        disconnect_all(state)
