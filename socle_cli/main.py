"""The `socle` operator command line: one module per command, each adding its parser."""

from __future__ import annotations

import argparse
import sys

from socle_cli import (
    alerting,
    dr_rehearsal,
    kubeconfig,
    offsite_prune,
    pins,
    secret_check,
    verify,
    vps_snapshot,
    wireguard_client,
)

# In the order `socle --help` lists them.
COMMAND_MODULES = (
    wireguard_client,
    kubeconfig,
    verify,
    dr_rehearsal,
    alerting,
    secret_check,
    pins,
    vps_snapshot,
    offsite_prune,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `socle` command."""
    parser = argparse.ArgumentParser(prog="socle", description="socle operator commands")
    commands = parser.add_subparsers(dest="command")
    for module in COMMAND_MODULES:
        module.add_parser(commands)
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
