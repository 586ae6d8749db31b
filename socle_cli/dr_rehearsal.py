"""`socle dr-rehearsal`: rebuild a fresh host from another's newest backups, and prove it.

The recovery procedure (docs/runbooks/disaster-recovery.md), run end to end and timed:

1. the newest backup of each database and the newest k3s snapshot on host A;
2. host B provisioned with ``deploys/all.py``;
3. those backups streamed from A to B through this machine (``tar`` over two SSH
   sessions: nothing lands on the operator's disk);
4. k3s's datastore restored on B (k3s stopped, ``socle-agent restore k3s``, started, the
   node Ready), then B converged again with ``deploys/all.py`` (the agent's cluster
   credentials follow the restored datastore);
5. each database restored on B (``socle-agent restore postgres --replace --with-roles``:
   into a new database, checked against the backup's manifest, then swapped in);
6. B's own first backups and drills of what was restored (and its off-site copy and
   drill when B has an off-site repository), so that B is protected again and its
   verify has fresh evidence;
7. ``socle verify`` on B.

Each step's time and the total are reported against the recovery target, as Markdown kept
as evidence. Host A is only read: ``socle-agent list`` and ``tar -c`` run there, nothing
else. B is refused when it is A.

With ``--backups offsite``, A is not contacted at all (it may be gone): B is provisioned
first, then B's agent lists the copies A sent to the off-site repository
(``socle-agent list --offsite --origin-host A``), and restores fetch them from there
(``restore ... --from offsite --origin-host A``), each checked against its manifest. B's
inventory points its ``offsite`` table at A's repository; the copies B sends of its own
carry B's name and are never chosen.

Example::

    socle dr-rehearsal --from inventories/prod.py --to inventories/rehearsal.py
    socle dr-rehearsal --from inventories/prod.py --to inventories/rehearsal.py \
        --backups offsite
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from socle_cli.inventory import InventoryLookupError, load_hosts, node_session
from socle_cli.verify import (
    REPO,
    CheckResult,
    Verdict,
    VerifyContext,
    now_utc,
    overall,
    render_markdown,
    run_checks,
    write_report,
)

DEFAULT_BACKUP_DIR = "/var/backups/socle"
DEFAULT_TARGET_S = 3600
K3S_READY_S = 300
DATABASE_WAIT_S = 600
# Exit codes of `socle-agent restore`: 1 failed (retried while the server comes up),
# 3 refused before anything changed, 4 no such backup.
RESTORE_FAILED = 1
LOCAL, OFFSITE = "local", "offsite"


class RehearsalError(Exception):
    """A step cannot go on; the message says why and what to look at."""


@dataclass
class RemoteHost:
    """One host of an inventory, reached with the OpenSSH client as its inventory says."""

    inventory: Path
    name: str
    data: dict[str, Any]

    @property
    def address(self) -> str:
        return str(self.data.get("ssh_hostname") or self.name)

    @property
    def backup_dir(self) -> str:
        agent = self.data.get("agent_settings", {}).get("agent", {})
        return str(agent.get("backup_dir", DEFAULT_BACKUP_DIR))

    def ssh_argv(self, command: str) -> list[str]:
        """``ssh ... COMMAND`` for this host, with the inventory's login, key and port."""
        port = str(self.data.get("ssh_port", 22))
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
                "-o", "ServerAliveInterval=15", "-p", port]  # fmt: skip
        if self.data.get("ssh_key"):
            argv += ["-i", str(self.data["ssh_key"]), "-o", "IdentitiesOnly=yes"]
        if self.data.get("ssh_known_hosts_file"):
            argv += ["-o", f"UserKnownHostsFile={self.data['ssh_known_hosts_file']}"]
        if self.data.get("ssh_strict_host_key_checking"):
            argv += ["-o", f"StrictHostKeyChecking={self.data['ssh_strict_host_key_checking']}"]
        user = self.data.get("ssh_user")
        argv += [f"{user}@{self.address}" if user else self.address, command]
        return argv

    def as_root(self, *words: str) -> str:
        """A shell command running ``words`` as root (through sudo when the login is not)."""
        command = " ".join(shlex.quote(word) for word in words)
        return f"sudo -n {command}" if self.data.get("_sudo") else command

    def run(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a shell ``command`` on the host; its output is returned, never printed."""
        return subprocess.run(self.ssh_argv(command), capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip


@dataclass
class Step:
    """One step of the rehearsal: its name, time, outcome and what it did."""

    name: str
    seconds: float = 0.0
    ok: bool = False
    detail: str = ""


@dataclass
class Rehearsal:
    """The rehearsal from ``source`` (A, read only) to ``target`` (B, rebuilt)."""

    source: RemoteHost
    target: RemoteHost
    target_seconds: float = DEFAULT_TARGET_S
    log_dir: Path = Path("verify-reports")
    backups: str = LOCAL
    echo: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    steps: list[Step] = field(default_factory=list)
    chosen: list[dict[str, Any]] = field(default_factory=list)
    verify_results: list[CheckResult] = field(default_factory=list)

    def run(self) -> bool:
        """Run every step in order, stopping at the first that fails; True when all held."""
        for name, action in self.plan():
            step = Step(name)
            self.steps.append(step)
            self.echo(f"==> {name} ...")
            started = time.monotonic()
            try:
                step.detail = action()
                step.ok = True
            except (RehearsalError, subprocess.TimeoutExpired, OSError) as error:
                step.detail = str(error)
            step.seconds = time.monotonic() - started
            self.echo(f"==> {name}: {'done' if step.ok else 'FAILED'} in {step.seconds:.1f} s")
            if not step.ok:
                return False
        return self.total_seconds <= self.target_seconds

    def plan(self) -> list[tuple[str, Callable[[], str]]]:
        """The steps, in order, for where the backups come from."""
        restores = [
            ("k3s datastore restored on B", self.restore_k3s),
            ("databases restored on B", self.restore_databases),
            ("B's own backups and drills", self.protect_target),
            ("socle verify on B", self.verify),
        ]
        if self.backups == OFFSITE:
            return [
                ("B provisioned (deploys/all.py)", self.provision),
                ("newest off-site copies of A", self.choose_offsite_copies),
                *restores,
            ]
        return [
            ("newest backups on A", self.choose_backups),
            ("B provisioned (deploys/all.py)", self.provision),
            ("backups copied from A to B", self.copy_backups),
            *restores,
        ]

    @property
    def total_seconds(self) -> float:
        return sum(step.seconds for step in self.steps)

    def choose_backups(self) -> str:
        """The newest backup of each (kind, subject) in A's catalogue."""
        listing = self.source.run(self.source.as_root("socle-agent", "list", "--json"))
        if listing.returncode != 0:
            raise RehearsalError(f"socle-agent list on A failed: {listing.stderr.strip()}")
        self.chosen = _newest(json.loads(listing.stdout))
        if not self.chosen:
            raise RehearsalError("A holds no backup: nothing to rehearse from")
        return self._chosen_summary()

    def choose_offsite_copies(self) -> str:
        """The newest copy of each (kind, subject) that A sent off-site, listed from B."""
        listing = self.target.run(self.target.as_root(
            "socle-agent", "list", "--offsite", "--origin-host", self.source.name, "--json"),
            timeout=600)  # fmt: skip
        if listing.returncode != 0:
            raise RehearsalError(
                f"socle-agent list --offsite on B failed: {listing.stderr.strip()} (is B's "
                "offsite table pointed at A's repository, and its credentials in SOPS?)"
            )
        copies = [b for b in json.loads(listing.stdout) if OFFSITE in b.get("where", ())]
        self.chosen = _newest(copies)
        if not self.chosen:
            raise RehearsalError(
                f"no copy of {self.source.name} off-site (B's repository holds none under "
                "that host name): nothing to rehearse from"
            )
        return self._chosen_summary()

    def _chosen_summary(self) -> str:
        return "; ".join(
            f"{b['kind']} {b['subject']}: {b['id']} ({_age(b['finished'])} old)"
            for b in self.chosen
        )

    def provision(self) -> str:
        """``pyinfra INVENTORY deploys/all.py --limit B``, its output kept in a log."""
        return self._deploy("provision")

    def _deploy(self, label: str) -> str:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"dr-rehearsal-{self.target.name}-{label}.log"
        pyinfra = Path(sys.executable).with_name("pyinfra")
        argv = [str(pyinfra), str(self.target.inventory), "deploys/all.py",
                "--limit", self.target.name, "-y"]  # fmt: skip
        with log.open("w") as output:
            done = subprocess.run(argv, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                  timeout=3600, check=False)  # fmt: skip
        if done.returncode != 0:
            tail = "".join(log.read_text().splitlines(keepends=True)[-5:]).strip()
            raise RehearsalError(f"deploys/all.py failed on B (see {log}): {tail}")
        return f"deploys/all.py on {self.target.name}, log in {log}"

    def copy_backups(self) -> str:
        """Stream each chosen backup folder from A's catalogue into B's, root-only."""
        copied = []
        for backup in self.chosen:
            folder = f"{backup['kind']}/{backup['folder']}"
            made = self.target.run(self.target.as_root(
                "install", "-d", "-m", "0700", f"{self.target.backup_dir}/{backup['kind']}"))
            if made.returncode != 0:
                raise RehearsalError(f"cannot make the catalogue on B: {made.stderr.strip()}")
            reader = subprocess.Popen(  # noqa: S603 - argv built from the inventory
                self.source.ssh_argv(self.source.as_root(
                    "tar", "-C", self.source.backup_dir, "-cf", "-", folder)),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            writer = subprocess.run(
                self.target.ssh_argv(self.target.as_root(
                    "tar", "-C", self.target.backup_dir, "--numeric-owner", "-xf", "-")),
                stdin=reader.stdout, capture_output=True, timeout=3600, check=False,
            )  # fmt: skip
            assert reader.stdout is not None
            reader.stdout.close()
            reader_error = reader.stderr.read().decode() if reader.stderr else ""
            if reader.wait(timeout=60) != 0 or writer.returncode != 0:
                raise RehearsalError(
                    f"copying {folder} failed: {reader_error.strip()} "
                    f"{writer.stderr.decode().strip()}"
                )
            private = self.target.run(self.target.as_root(
                "chmod", "-R", "go=", f"{self.target.backup_dir}/{folder}"))
            if private.returncode != 0:
                raise RehearsalError(f"cannot make {folder} private on B")
            copied.append(f"{folder} ({backup['size_bytes']} bytes)")
        return ", ".join(copied)

    def restore_k3s(self) -> str:
        """Restore the newest k3s snapshot on B, wait until B's node is Ready, converge."""
        snapshots = [b for b in self.chosen if b["kind"] == "k3s"]
        if not snapshots:
            return "no k3s snapshot on A: skipped"
        snapshot = snapshots[0]["id"]
        stopped = self.target.run(self.target.as_root("systemctl", "stop", "k3s"))
        if stopped.returncode != 0:
            raise RehearsalError(f"cannot stop k3s on B: {stopped.stderr.strip()}")
        restored = self.target.run(
            self.target.as_root("socle-agent", "restore", "k3s", "--snapshot", snapshot,
                                *self._origin()),
            timeout=1800,
        )
        started = self.target.run(self.target.as_root("systemctl", "start", "k3s"))
        if restored.returncode != 0:
            raise RehearsalError(f"socle-agent restore k3s failed: {restored.stderr.strip()}")
        if started.returncode != 0:
            raise RehearsalError(f"k3s did not start after the restore: {started.stderr.strip()}")
        node = self._wait_node_ready()
        self._deploy("converge")
        return f"snapshot {snapshot} restored; node {node} Ready; B converged again"

    def _origin(self) -> tuple[str, ...]:
        """Where a restore on B fetches from: B's own catalogue, or A's copies off-site."""
        if self.backups == OFFSITE:
            return ("--from", OFFSITE, "--origin-host", self.source.name)
        return ()

    def _wait_node_ready(self) -> str:
        hostname = self.target.run("hostname").stdout.strip()
        deadline = time.monotonic() + K3S_READY_S
        while time.monotonic() < deadline:
            answer = self.target.run(
                self.target.as_root("k3s", "kubectl", "get", "nodes", "-o", "json"), timeout=60
            )
            if answer.returncode == 0:
                nodes = {n["metadata"]["name"]: n for n in json.loads(answer.stdout)["items"]}
                if _ready(nodes.get(hostname)):
                    # The lost host's node stays NotReady: delete it so its pods move.
                    for name, other in nodes.items():
                        if name != hostname and not _ready(other):
                            self.target.run(self.target.as_root(
                                "k3s", "kubectl", "delete", "node", name))
                    return hostname
            time.sleep(5)
        raise RehearsalError(
            f"B's node {hostname} not Ready within {K3S_READY_S} s: look at "
            "`journalctl -u k3s` and `k3s kubectl get nodes` on B"
        )

    def restore_databases(self) -> str:
        """Restore each database's newest backup on B, waiting for its server to come up."""
        restored = []
        for backup in (b for b in self.chosen if b["kind"] == "postgres"):
            command = self.target.as_root(
                "socle-agent", "restore", "postgres", "--backup", backup["id"],
                "--database", backup["subject"], "--replace", "--with-roles", *self._origin(),
            )  # fmt: skip
            deadline = time.monotonic() + DATABASE_WAIT_S
            while True:
                done = self.target.run(command, timeout=3600)
                if done.returncode != RESTORE_FAILED or time.monotonic() > deadline:
                    break
                time.sleep(10)  # the server may still be starting: a restore is safe to retry
            if done.returncode != 0:
                raise RehearsalError(
                    f"restore of {backup['subject']} from {backup['id']} failed "
                    f"(exit {done.returncode}): {done.stderr.strip()[-500:]}"
                )
            restored.append(f"{backup['subject']} from {backup['id']}")
        return ", ".join(restored) or "no database backup on A"

    def protect_target(self) -> str:
        """B's first backups of what was restored, drilled; copied and drilled off-site."""
        kinds = {b["kind"] for b in self.chosen}
        jobs = [job for kind, job in (("postgres", ("backup", "postgres")),
                                      ("k3s", ("snapshot", "k3s")),
                                      ("postgres", ("drill", "postgres")),
                                      ("k3s", ("drill", "k3s"))) if kind in kinds]  # fmt: skip
        if self.target.data.get("offsite"):
            jobs += [("copy", "offsite"), ("drill", "offsite")]
        for job in jobs:
            done = self.target.run(self.target.as_root("socle-agent", *job), timeout=3600)
            if done.returncode != 0:
                raise RehearsalError(
                    f"socle-agent {' '.join(job)} failed on B (exit {done.returncode}): "
                    f"{done.stderr.strip()[-500:]}"
                )
        return ", ".join(" ".join(job) for job in jobs)

    def verify(self) -> str:
        """``socle verify`` on B; the step fails on any No-Go."""
        try:
            with node_session(self.target.inventory, self.target.name) as node:
                context = VerifyContext(host_name=self.target.name, data=self.target.data,
                                        node=node)  # fmt: skip
                self.verify_results = run_checks(context)
        except InventoryLookupError as error:
            raise RehearsalError(f"cannot reach B to verify it: {error}") from None
        verdict = overall(self.verify_results)
        unchecked = sum(r.verdict is Verdict.NOT_CHECKED for r in self.verify_results)
        summary = f"{verdict.value} ({len(self.verify_results)} checks, {unchecked} not checked)"
        if verdict is Verdict.NO_GO:
            failing = [f"{r.phase}: {r.check}" for r in self.verify_results
                       if r.verdict is Verdict.NO_GO]  # fmt: skip
            raise RehearsalError(f"{summary}: No-Go on {', '.join(failing)}")
        return summary


def _newest(backups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest backup of each (kind, subject), sorted by kind and subject."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for backup in backups:
        key = (backup["kind"], backup["subject"])
        if key not in newest or backup["finished"] > newest[key]["finished"]:
            newest[key] = backup
    return sorted(newest.values(), key=lambda b: (b["kind"], b["subject"]))


def _ready(node: dict[str, Any] | None) -> bool:
    if node is None:
        return False
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _age(finished: float) -> str:
    seconds = max(0, int(time.time() - finished))
    return f"{seconds // 3600} h {seconds % 3600 // 60} min" if seconds >= 3600 else f"{seconds} s"


def render_report(rehearsal: Rehearsal, when: datetime, passed: bool) -> str:
    """The rehearsal's evidence: steps and times against the target, then B's verify."""
    source, target = rehearsal.source, rehearsal.target
    total = rehearsal.total_seconds
    lines = [
        f"# socle dr-rehearsal: {source.name} -> {target.name}, "
        f"{when.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "",
        f"**{'PASSED' if passed else 'FAILED'}**: recovered in {total:.0f} s against a "
        f"target of {rehearsal.target_seconds:.0f} s, from "
        + ("A's own disk." if rehearsal.backups == LOCAL else
           "A's copies in the off-site repository (A not contacted)."),
        "",
        "| step | outcome | time | what it did |",
        "| --- | --- | --- | --- |",
    ]
    for step in rehearsal.steps:
        detail = step.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {step.name} | {'done' if step.ok else 'FAILED'} | "
                     f"{step.seconds:.1f} s | {detail} |")  # fmt: skip
    within = "within" if total <= rehearsal.target_seconds else "OVER"
    lines.append(f"| total | {within} the target | {total:.1f} s | "
                 f"target {rehearsal.target_seconds:.0f} s |")  # fmt: skip
    if rehearsal.verify_results:
        verify = render_markdown(target.name, rehearsal.verify_results, when)
        lines += ["", "## socle verify on " + target.name, ""]
        lines += verify.split("\n", 2)[2].splitlines()
    return "\n".join(lines) + "\n"


def _host(inventory: Path, host_name: str | None, role: str) -> RemoteHost:
    hosts = load_hosts(inventory)
    if host_name is None:
        if len(hosts) != 1:
            raise InventoryLookupError(
                f"choose host {role} with --{role}-host ({', '.join(sorted(hosts))})"
            )
        host_name = next(iter(hosts))
    if host_name not in hosts:
        raise InventoryLookupError(f"no host {host_name!r} in {inventory}")
    return RemoteHost(inventory, host_name, hosts[host_name])


def check_offsite_target(target: RemoteHost) -> None:
    """Refuse an off-site rehearsal onto a B whose inventory sets no off-site repository."""
    if not target.data.get("offsite"):
        raise RehearsalError(
            f"--backups offsite: {target.name}'s inventory has no offsite table; point it at "
            "A's repository (docs/offsite.md) so B can read A's copies"
        )


def check_distinct(source: RemoteHost, target: RemoteHost) -> None:
    """Refuse to rebuild the host the backups come from."""
    same_address = (source.address, source.data.get("ssh_port", 22)) == (
        target.address, target.data.get("ssh_port", 22)
    )
    if same_address or (source.inventory == target.inventory and source.name == target.name):
        raise RehearsalError(
            f"--to names the same host as --from ({target.name} at {target.address}): the "
            "rehearsal would replace the live data it restores from"
        )


def _confirm(target: RemoteHost, assume_yes: bool) -> bool:
    warning = (
        f"This provisions {target.name} ({target.address}) with deploys/all.py and REPLACES "
        "its k3s datastore and the databases restored there."
    )
    print(warning, file=sys.stderr)
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print("socle: not a terminal: give --yes to go on", file=sys.stderr)
        return False
    return input(f"Type {target.name} to go on: ").strip() == target.name


def _rehearsal_command(args: argparse.Namespace) -> int:
    from pyinfra.api.exceptions import PyinfraError

    try:
        source = _host(args.source_inventory, args.from_host, "from")
        target = _host(args.target_inventory, args.to_host, "to")
        check_distinct(source, target)
        if args.backups == OFFSITE:
            check_offsite_target(target)
    except (InventoryLookupError, PyinfraError, RehearsalError) as error:
        print(f"socle: {error}", file=sys.stderr)
        return 2
    if not _confirm(target, args.yes):
        return 2
    started = now_utc()
    rehearsal = Rehearsal(source, target, args.target_seconds, args.report_dir, args.backups)
    passed = rehearsal.run()
    report = render_report(rehearsal, started, passed)
    sys.stdout.write(report)
    path = write_report(args.report_dir, f"dr-{source.name}-to-{target.name}", report, started)
    print(f"report kept in {path}", file=sys.stderr)
    return 0 if passed else 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dr-rehearsal` to the `socle` command line."""
    parser = commands.add_parser(
        "dr-rehearsal",
        help="rebuild a fresh host from another's newest backups, verify it, time it",
        description=(
            "Take host A's newest backups, provision host B with deploys/all.py, restore "
            "k3s's datastore and the databases there, run socle verify on B, and report "
            "each step's time against the recovery target. A is only read."
        ),
    )
    parser.add_argument("--from", dest="source_inventory", type=Path, required=True,
                        help="the inventory of host A, whose backups are used")  # fmt: skip
    parser.add_argument("--from-host", help="host A, when that inventory has several")
    parser.add_argument("--to", dest="target_inventory", type=Path, required=True,
                        help="the inventory of host B, which is rebuilt")  # fmt: skip
    parser.add_argument("--to-host", help="host B, when that inventory has several")
    parser.add_argument("--target-seconds", type=float, default=DEFAULT_TARGET_S,
                        help="the recovery time target (default: %(default)s)")  # fmt: skip
    parser.add_argument("--backups", choices=(LOCAL, OFFSITE), default=LOCAL,
                        help="A's own catalogue, read over SSH (default), or A's copies in "
                             "the off-site repository, read by B (A not contacted)")  # fmt: skip
    parser.add_argument("--report-dir", type=Path, default=Path("verify-reports"))
    parser.add_argument("--yes", action="store_true", help="do not ask before replacing B")
    parser.set_defaults(handler=_rehearsal_command)


__all__: Sequence[str] = ("Rehearsal", "RemoteHost", "add_parser", "render_report")
