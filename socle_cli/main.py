"""The `socle` operator command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _wireguard_client_config(args: argparse.Namespace) -> int:
    from pyinfra.api.exceptions import PyinfraError

    from socle.sops_secrets import SopsError
    from socle_cli.wireguard_client import ClientConfigError, write_client_config

    try:
        text = write_client_config(
            Path(args.inventory), args.peer, args.host, args.private_key_file
        )
    except (ClientConfigError, PyinfraError, SopsError, OSError) as error:
        print(f"socle: {error}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # The file may hold the admin's private key: readable by its owner only.
    descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as output:
        output.write(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    from pyinfra.api.exceptions import PyinfraError

    from socle_cli.kubeconfig import KubeconfigError, write_kubeconfig

    try:
        host_name = write_kubeconfig(Path(args.inventory), args.output, args.host)
    except (KubeconfigError, PyinfraError, OSError) as error:
        print(f"socle: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} (0600): the admin kubeconfig of {host_name}, over the VPN",
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `socle` command."""
    parser = argparse.ArgumentParser(prog="socle", description="socle operator commands")
    commands = parser.add_subparsers(dest="command")

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
    client.set_defaults(handler=_wireguard_client_config)

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
    kubeconfig.set_defaults(handler=_kubeconfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `socle` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
