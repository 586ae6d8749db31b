"""`socle snapshot-vps`: take the provider's snapshot of the VPS, or put it back.

OVH keeps one snapshot per VPS, so a new one replaces the old: the command says so and
asks before deleting it (``--yes`` answers for the operator). ``--revert`` puts the VPS
back to its snapshot after the operator types the VPS's name. Both wait for OVH's task,
with progress lines and a deadline (``ovh_vps.timeout_seconds``), and print its time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from socle.vps_snapshot import (
    INVENTORY_KEY,
    Snapshot,
    VpsSnapshotError,
    VpsSnapshots,
    api_client,
    default_description,
    read_credentials,
    vps_snapshot_settings,
)


class ConfirmationNeeded(VpsSnapshotError):
    """A question needs an answer and nobody is at a terminal to give it."""


def ask(question: str, wanted: tuple[str, ...], stdin: TextIO, stderr: TextIO) -> bool:
    """Ask ``question`` on the terminal; True when the answer is one of ``wanted``."""
    if not stdin.isatty():
        raise ConfirmationNeeded(f"{question} No terminal to answer on: pass --yes to confirm")
    stderr.write(f"{question} ")
    stderr.flush()
    return stdin.readline().strip().lower() in wanted


def run(args: argparse.Namespace) -> int:
    """Take (or with ``--revert`` revert to) the snapshot of the inventory's VPS."""
    from pyinfra.api.exceptions import PyinfraError

    from socle_cli.inventory import InventoryLookupError, host_with, load_hosts

    stdin, stderr = sys.stdin, sys.stderr

    def echo(line: str) -> None:
        print(line, file=stderr, flush=True)

    try:
        inventory = Path(args.inventory)
        host_name, data = host_with(load_hosts(inventory), INVENTORY_KEY, args.host, inventory)
        settings = vps_snapshot_settings(data)
        assert settings is not None  # host_with chose a host that has the key
        client = api_client(settings, read_credentials(settings))
        snapshots = VpsSnapshots(client, settings, echo=echo)
        service = settings.service_name
        if args.revert:

            def confirm(snapshot: Snapshot) -> bool:
                echo(
                    f"Reverting {service} ({host_name}) to its snapshot {snapshot.describe()}: "
                    "everything written on the VPS since then is lost, and it restarts."
                )
                return args.yes or ask(
                    f"Type the VPS's name ({service}) to revert it:", (service.lower(),),
                    stdin, stderr,
                )  # fmt: skip

            snapshot, seconds = snapshots.revert(confirm=confirm)
            echo(f"{service} reverted to its snapshot {snapshot.describe()} in {seconds:.0f} s")
            return 0

        def replace(old: Snapshot) -> bool:
            echo(
                f"{service} ({host_name}) already has a snapshot {old.describe()}. OVH keeps "
                "one per VPS: it is deleted first, and until the new one is done the VPS has "
                "none."
            )
            return args.yes or ask("Replace it? [y/N]", ("y", "yes"), stdin, stderr)

        taken = snapshots.take(args.description or default_description(), replace=replace)
        echo(f"snapshot of {service} taken in {taken.seconds:.0f} s: {taken.snapshot.describe()}")
        return 0
    except (VpsSnapshotError, InventoryLookupError, PyinfraError, OSError) as error:
        print(f"socle: {error}", file=stderr)
        return 1


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``snapshot-vps`` to the ``socle`` command line."""
    parser = commands.add_parser(
        "snapshot-vps",
        help="take the provider's snapshot of the VPS (replacing the old one), or revert to it",
        description=(
            "Take a snapshot of the VPS through the OVH API (one per VPS: an existing one is "
            "deleted first, after a question), wait for it and print its time; with --revert, "
            "put the VPS back to it. The inventory's ovh_vps table names the VPS and the SOPS "
            "file holding the API keys (ovh_application_key, ovh_application_secret, "
            "ovh_consumer_key), read on this machine only."
        ),
    )
    parser.add_argument("--inventory", required=True, help="e.g. inventories/prod.py")
    parser.add_argument("--host", help="the inventory host, when several have ovh_vps")
    parser.add_argument(
        "--revert", action="store_true", help="put the VPS back to its snapshot (asks first)"
    )
    parser.add_argument(
        "--yes", action="store_true", help="answer yes: replace the old snapshot, or revert"
    )
    parser.add_argument(
        "--description", help="the snapshot's description (default: the command and the time)"
    )
    parser.set_defaults(handler=run)
