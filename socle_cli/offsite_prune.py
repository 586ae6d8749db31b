"""`socle offsite prune`: apply the off-site retention from the operator's machine.

The node can only add to its off-site repository; removing old copies takes the full
rights the operator holds (``offsite.operator`` in the inventory, its secrets in SOPS).
Snapshots are grouped as the agent tags them (host, ``kind=``, ``database=``) and each
group keeps what ``offsite_retention`` says, which mirrors the local policy with longer
counts. The plan is shown first; nothing is removed before the operator says yes.

Snapshots come from the node, which may be compromised: their tags are only ever used
as restic filters when plain, and a snapshot dated in the future stops the prune.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from socle.inventory_checks import InventoryDataError
from socle.offsite_files import percent_encode
from socle.offsite_settings import (
    INVENTORY_KEY,
    RETENTION_KEYS,
    OffsiteSettings,
    S3Destination,
    offsite_retention,
    offsite_settings,
    read_offsite_secrets,
)

_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.@%+-]{1,200}$")
LIST_TIMEOUT_S = 900
# Clocks differ: a snapshot is "in the future" only past this margin.
CLOCK_MARGIN = timedelta(hours=1)


class PruneError(RuntimeError):
    """The prune cannot go on; the message says why."""


@dataclass(frozen=True)
class Group:
    """One line of history: a host's snapshots of one kind (and database)."""

    kind: str
    database: str | None

    @property
    def tags(self) -> str:
        """The restic tag filter: snapshots that have all of these tags."""
        return f"kind={self.kind}" + (f",database={self.database}" if self.database else "")


@dataclass(frozen=True)
class GroupPlan:
    """What the retention keeps and removes in one group (snapshot ids)."""

    group: Group
    keep: list[str]
    remove: list[str]


def _tag(tags: Sequence[str], name: str) -> str | None:
    values = [tag.split("=", 1)[1] for tag in tags if tag.startswith(f"{name}=")]
    return values[0] if len(values) == 1 else None


def group_snapshots(snapshots: Sequence[Mapping[str, Any]]) -> tuple[list[Group], list[str]]:
    """Return the groups found in ``snapshots``, and the ids of snapshots left alone
    (no plain ``kind=`` tag, or tags that are not plain)."""
    groups: set[Group] = set()
    left_alone = []
    for snapshot in snapshots:
        tags = [str(tag) for tag in snapshot.get("tags") or []]
        kind, database = _tag(tags, "kind"), _tag(tags, "database")
        plain = (
            kind is not None
            and _TAG_VALUE.match(kind)
            and (database is None or _TAG_VALUE.match(database))
        )
        if plain:
            assert kind is not None
            groups.add(Group(kind, database))
        else:
            left_alone.append(str(snapshot.get("short_id") or snapshot.get("id")))
    return sorted(groups, key=lambda g: (g.kind, g.database or "")), left_alone


def future_snapshots(snapshots: Sequence[Mapping[str, Any]], now: datetime) -> list[str]:
    """Ids of snapshots dated after ``now`` (plus a margin): forged, or a wrong clock."""
    future = []
    for snapshot in snapshots:
        stamp = str(snapshot.get("time", ""))
        try:
            when = datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", stamp))
        except ValueError:
            future.append(str(snapshot.get("short_id")))
            continue
        if when.tzinfo is None or when > now + CLOCK_MARGIN:
            future.append(str(snapshot.get("short_id")))
    return future


class OperatorRestic:
    """restic on the repository as the operator reaches it, secrets in its environment."""

    def __init__(self, settings: OffsiteSettings, secrets: Mapping[str, str]) -> None:
        operator = settings.operator
        assert operator is not None
        executable = shutil.which("restic")
        if executable is None:
            raise PruneError("restic is not installed on this machine (apt install restic)")
        repository = operator.repository
        if operator.kind == "rest":
            scheme, rest = repository.removeprefix("rest:").split("://", 1)
            login = f"{percent_encode(operator.rest_user or '')}:" + percent_encode(
                secrets["offsite_admin_rest_password"]
            )
            repository = f"rest:{scheme}://{login}@{rest}"
        # The password and keys go through the environment, never the command line.
        self.env = {**os.environ, "RESTIC_REPOSITORY": repository,
                    "RESTIC_PASSWORD": secrets["offsite_restic_password"]}  # fmt: skip
        if operator.kind == "s3":
            self.env["AWS_ACCESS_KEY_ID"] = secrets["offsite_admin_s3_access_key_id"]
            self.env["AWS_SECRET_ACCESS_KEY"] = secrets["offsite_admin_s3_secret_access_key"]
            if isinstance(settings.destination, S3Destination):
                self.env["AWS_DEFAULT_REGION"] = settings.destination.region
        self.prefix = [executable]
        if operator.sftp_command:
            self.prefix += ["-o", f"sftp.command={operator.sftp_command}"]

    def json(self, *args: str) -> Any:
        """Run restic with ``--json`` and return what it printed, parsed."""
        proc = subprocess.run(
            [*self.prefix, *args, "--json"], env=self.env, capture_output=True, text=True,
            timeout=LIST_TIMEOUT_S, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise PruneError(f"restic {args[0]} failed: {proc.stderr.strip()[-800:]}")
        try:
            return json.loads(proc.stdout or "null")
        except json.JSONDecodeError:
            raise PruneError(f"restic {args[0]} printed no JSON: {proc.stdout[:200]!r}") from None

    def run(self, *args: str) -> None:
        """Run restic with its output shown as it goes (prune takes a while)."""
        proc = subprocess.run([*self.prefix, *args], env=self.env, check=False)
        if proc.returncode != 0:
            raise PruneError(f"restic {args[0]} failed (exit {proc.returncode}); see above")


def plan_prune(
    restic: OperatorRestic, host_name: str, counts: Mapping[str, int]
) -> tuple[list[GroupPlan], list[str], int]:
    """Ask restic which snapshots each group's retention removes; return the plans, the
    snapshots left alone and how many snapshots the host has."""
    snapshots = restic.json("snapshots", "--host", host_name) or []
    future = future_snapshots(snapshots, datetime.now(UTC))
    if future:
        raise PruneError(
            f"snapshots dated in the future ({', '.join(future)}): a wrong clock on the node, "
            "or forged to steer the retention. Look at them (restic snapshots) before pruning"
        )
    groups, left_alone = group_snapshots(snapshots)
    keep_flags = [item for name in RETENTION_KEYS
                  for item in (f"--{name.replace('_', '-')}", str(counts[name]))]  # fmt: skip
    plans = []
    for group in groups:
        answer = restic.json("forget", "--dry-run", "--host", host_name, "--tag", group.tags,
                             "--group-by", "host", *keep_flags) or []  # fmt: skip
        keep = [str(s["id"]) for part in answer for s in part.get("keep") or []]
        remove = [str(s["id"]) for part in answer for s in part.get("remove") or []]
        plans.append(GroupPlan(group, keep, remove))
    return plans, left_alone, len(snapshots)


def run(args: argparse.Namespace) -> int:
    """Plan the off-site retention, ask, then forget and prune."""
    from pyinfra.api.exceptions import PyinfraError

    from socle_cli.inventory import InventoryLookupError, host_with, load_hosts
    from socle_cli.vps_snapshot import ConfirmationNeeded, ask

    started = time.monotonic()
    try:
        inventory = Path(args.inventory)
        host_name, data = host_with(load_hosts(inventory), INVENTORY_KEY, args.host, inventory)
        settings = offsite_settings(data, host_name)
        assert settings is not None  # host_with chose a host that has the key
        counts = offsite_retention(data, settings)
        restic = OperatorRestic(settings, read_offsite_secrets(settings, operator=True))
        print(f"off-site retention of {host_name}: " + ", ".join(
            f"{name} {counts[name]}" for name in RETENTION_KEYS), file=sys.stderr)  # fmt: skip
        plans, left_alone, total = plan_prune(restic, host_name, counts)
        for plan in plans:
            print(
                f"{plan.group.tags}: keep {len(plan.keep)}, remove {len(plan.remove)}"
                + (f" ({', '.join(i[:8] for i in plan.remove)})" if plan.remove else "")
            )
        if left_alone:
            print(f"left alone (no plain kind= tag): {', '.join(left_alone)}")
        removed = [snapshot for plan in plans for snapshot in plan.remove]
        if not removed:
            print(f"nothing to remove among {total} snapshot(s) of {host_name}", file=sys.stderr)
            return 0
        if args.dry:
            print(f"--dry: {len(removed)} of {total} snapshot(s) would be removed", file=sys.stderr)
            return 0
        question = f"Remove {len(removed)} of {total} off-site snapshot(s) of {host_name}? [y/N]"
        if not (args.yes or ask(question, ("y", "yes"), sys.stdin, sys.stderr)):
            print("nothing removed", file=sys.stderr)
            return 1
        # Locks left by a node that stopped half-way; a live one stops the prune below.
        restic.run("unlock")
        restic.run("forget", *removed)
        restic.run("prune")
        print(f"removed {len(removed)} snapshot(s) and their unused data in "
              f"{time.monotonic() - started:.0f} s", file=sys.stderr)  # fmt: skip
        return 0
    except (PruneError, ConfirmationNeeded, InventoryDataError, InventoryLookupError,
            PyinfraError, OSError, subprocess.TimeoutExpired) as error:  # fmt: skip
        print(f"socle: {error}", file=sys.stderr)
        return 1


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``offsite prune`` to the ``socle`` command line."""
    offsite = commands.add_parser("offsite", help="the off-site copies")
    offsite_commands = offsite.add_subparsers(dest="offsite_command")
    prune = offsite_commands.add_parser(
        "prune",
        help="apply the off-site retention with the operator's full rights",
        description=(
            "Group the host's off-site snapshots by the agent's tags (kind=, database=), show "
            "which ones the off-site retention (offsite.retention, by default twice the local "
            "counts) removes, ask, then forget them and prune the repository. Uses "
            "offsite.operator.repository with the secrets of offsite.sops_file; needs restic "
            "on this machine."
        ),
    )
    prune.add_argument("--inventory", required=True, help="e.g. inventories/prod.py")
    prune.add_argument("--host", help="the inventory host, when several have offsite")
    prune.add_argument("--dry", action="store_true", help="show the plan, remove nothing")
    prune.add_argument("--yes", action="store_true", help="remove without asking")
    prune.set_defaults(handler=run)
