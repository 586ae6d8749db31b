"""Write an admin's kubeconfig for the cluster, whose API is reached over the VPN.

The node's admin kubeconfig (``/etc/rancher/k3s/k3s.yaml``, root only) is read with
``sudo cat`` over the SSH channel straight into this process' memory: no copy is made
on the node, nothing is made readable there (pyinfra's ``get_file`` with sudo would copy
it to a temporary file readable by every local user). The copy written here points at
the node's VPN address (in k3s's ``tls-san``), is named after the host, and is private to
its owner (0600) from its first byte.

    socle kubeconfig --inventory inventories/prod.py --output ~/.kube/socle.yaml
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from socle.k3s_plan import API_PORT, KUBECONFIG
from socle_cli.inventory import InventoryLookupError, host_with, load_hosts, node_session
from socle_cli.private_files import write_private


class KubeconfigError(Exception):
    """The kubeconfig cannot be read or written; the message says why."""


def admin_kubeconfig(node_config: str, vpn_address: str, name: str) -> str:
    """Return k3s's admin kubeconfig ``node_config`` rewritten for an admin's machine:
    the server at ``https://<vpn_address>:6443``, cluster, user and context named ``name``.

    >>> admin_kubeconfig(text, "10.8.0.1", "socle-vps")  # doctest: +SKIP
    """
    try:
        config = yaml.safe_load(node_config)
        cluster = copy.deepcopy(config["clusters"][0]["cluster"])
        user = copy.deepcopy(config["users"][0]["user"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        raise KubeconfigError(f"{KUBECONFIG} on the node is not a kubeconfig k3s wrote") from None
    if not user.get("client-key-data") and not user.get("token"):
        raise KubeconfigError(f"{KUBECONFIG} on the node holds no admin credentials")
    cluster["server"] = f"https://{vpn_address}:{API_PORT}"
    result: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    header = f"# Admin kubeconfig of {name}, written by socle: keep it private (0600).\n"
    return header + yaml.safe_dump(result, sort_keys=False)


def read_node_kubeconfig(inventory: Path, host_name: str, data: Mapping[str, Any]) -> str:
    """Read the node's admin kubeconfig over SSH with ``sudo cat``, into memory only."""
    from pyinfra.api import QuoteString, StringCommand

    try:
        with node_session(inventory, host_name) as node:
            ok, output = node.host.run_shell_command(
                StringCommand("cat", QuoteString(KUBECONFIG)),
                _sudo=bool(data.get("_sudo")),
                print_output=False,
            )
    except InventoryLookupError as error:
        raise KubeconfigError(str(error)) from None
    if not ok:
        detail = " ".join(output.stderr.split())[-300:]
        raise KubeconfigError(
            f"cannot read {KUBECONFIG} on {host_name} ({detail}): is k3s installed there "
            "(deploys/k3s.py)?"
        )
    return output.stdout + "\n"


def write_kubeconfig(inventory: Path, output: Path, host_name: str | None = None) -> str:
    """Write the admin kubeconfig of the inventory's VPN host to ``output``; return the
    host's name."""
    from socle.inventory_checks import vpn_interface

    try:
        hosts = load_hosts(inventory)
        host_name, data = host_with(hosts, "wireguard_address", host_name, inventory)
    except InventoryLookupError as error:
        raise KubeconfigError(str(error)) from None
    address = str(vpn_interface(data).ip)
    text = admin_kubeconfig(read_node_kubeconfig(inventory, host_name, data), address,
                            f"socle-{host_name}")
    write_private(output, text)
    return host_name


def _kubeconfig_command(args: argparse.Namespace) -> int:
    from pyinfra.api.exceptions import PyinfraError

    try:
        host_name = write_kubeconfig(Path(args.inventory), args.output, args.host)
    except (KubeconfigError, PyinfraError, OSError) as error:
        print(f"socle: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} (0600): the admin kubeconfig of {host_name}, over the VPN",
          file=sys.stderr)
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `kubeconfig` to the `socle` command line."""
    kubeconfig = commands.add_parser(
        "kubeconfig",
        help="write an admin kubeconfig (0600) for the cluster, reached over the VPN",
        description=(
            "Read the node's admin kubeconfig with sudo over SSH, into memory only, and "
            "write it with the API server at the node's VPN address (in k3s's tls-san). "
            "Connect to the VPN first (socle wireguard client-config)."
        ),
    )
    kubeconfig.add_argument("--inventory", required=True, help="e.g. inventories/prod.py")
    kubeconfig.add_argument("--host", help="the k3s host, when the inventory has several")
    kubeconfig.add_argument("--output", "-o", type=Path, required=True,
                            help="file to write, e.g. ~/.kube/socle.yaml (mode 0600)")
    kubeconfig.set_defaults(handler=_kubeconfig_command)
