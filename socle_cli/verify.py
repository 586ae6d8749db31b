"""`socle verify`: the design's Go/No-Go criteria, run against the real host as evidence.

Each check runs one phase's proof and returns a verdict with its evidence: **Go**,
**No-Go**, or **not checked** with the reason (no cluster yet, a stand-in, unreachable).
A check that raises is "not checked", never Go. The whole is No-Go when any check is.
Phases 1, 2 and 7 and the repository are checked here; phases 3 to 6 in
``socle_cli.verify_cluster``; the verdicts, context and report in ``socle_cli.verify_core``.

Example::

    socle verify -i inventories/prod.py            # table on stdout, Markdown report kept
    socle verify -i inventories/prod.py --strict   # "not checked" fails too
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from socle.secret_scan import scan_repository
from socle_cli.inventory import InventoryLookupError, load_hosts, node_session
from socle_cli.verify_cluster import (
    check_alertmanager,
    check_argocd,
    check_exposure,
    check_k3s_node,
    check_postgresql,
    check_test_ingress,
)
from socle_cli.verify_core import (
    DEFAULT_SCAN_PORTS,
    REPO,
    Check,
    CheckResult,
    NotChecked,
    Verdict,
    VerifyContext,
    now_utc,
    overall,
    render_markdown,
    result,
    write_report,
)
from socle_cli.verify_core import run_checks as run_given_checks

__all__ = [
    "CHECKS", "DEFAULT_SCAN_PORTS", "REPO", "CheckResult", "NotChecked", "Verdict",
    "VerifyContext", "now_utc", "open_tcp_ports", "overall", "render_markdown", "run_checks",
    "write_report",
]  # fmt: skip

HANDSHAKE_FRESH_S = 600


def _connection_budget() -> int:
    """How many connections may be open at once: the file limit, raised to its maximum."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return max(64, min(soft - 256, 8192))


async def _open_ports(address: str, ports: Sequence[int], timeout: float) -> list[int]:
    # A firewall that drops answers nothing: each closed port costs the whole timeout, so
    # the ports are tried all at once, as far as the file limit allows.
    limit = asyncio.Semaphore(_connection_budget())

    async def probe(port: int) -> int | None:
        async with limit:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
            except (OSError, TimeoutError):
                return None
            writer.close()
            return port

    found = await asyncio.gather(*(probe(port) for port in ports))
    return sorted(port for port in found if port is not None)


def open_tcp_ports(address: str, ports: Sequence[int], timeout: float = 1.0) -> list[int]:
    """Return which of ``ports`` accept a TCP connection at ``address``, from here."""
    return asyncio.run(_open_ports(address, ports, timeout))


def check_public_ports(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 1: from the operator's machine, only the public ports answer."""
    allowed = set(ctx.data.get("ufw_public_tcp", [22, 80, 443]))
    started = time.monotonic()
    open_ports = open_tcp_ports(ctx.public_address, ctx.scan_ports)
    unexpected = sorted(set(open_ports) - allowed)
    evidence = (
        f"{len(ctx.scan_ports)} TCP ports of {ctx.public_address} scanned in "
        f"{time.monotonic() - started:.1f} s: open {open_ports or 'none'}"
        + (f"; NOT ALLOWED: {unexpected}" if unexpected else f"; allowed {sorted(allowed)}")
    )
    yield result("1 baseline", "public TCP ports", not unexpected, evidence)


def offered_ssh_methods(address: str, port: int, user: str) -> list[str]:
    """Return the authentication methods the SSH server offers ``user`` (none tried)."""
    import paramiko

    with socket.create_connection((address, port), timeout=10) as sock:
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=10)
            try:
                transport.auth_none(user)
            except paramiko.BadAuthenticationType as refusal:
                return sorted(refusal.allowed_types)
            return ["none"]
        finally:
            transport.close()


def check_ssh_logins(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 1: password login is not offered, and root may not log in at all."""
    port = int(ctx.data.get("ssh_port", 22))
    user = str(ctx.data.get("ssh_user", "ubuntu"))
    methods = offered_ssh_methods(ctx.public_address, port, user)
    yield result(
        "1 baseline", "password login refused",
        set(methods) <= {"publickey"}, f"the server offers {user}: {', '.join(methods)}",
    )  # fmt: skip
    settings = dict(
        line.split(" ", 1) for line in ctx.run("sshd -T").splitlines() if " " in line
    )
    root = settings.get("permitrootlogin", "unknown")
    yield result(
        "1 baseline", "root login refused", root == "no", f"sshd -T: permitrootlogin {root}"
    )


def check_wireguard(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 2: the VPN is up and a peer completed a handshake recently."""
    interface = str(ctx.data.get("wireguard_interface", "wg0"))
    output = ctx.run(f"wg show {interface} latest-handshakes && date +%s")
    lines = output.split()
    now = int(lines[-1])
    stamps = [int(value) for value in lines[1:-1:2] if value.isdigit() and int(value) > 0]
    if not stamps:
        yield result(
            "2 VPN", "WireGuard handshake", False,
            f"{interface} is up but no peer has ever completed a handshake: connect your "
            "VPN client and run again",
        )  # fmt: skip
        return
    age = now - max(stamps)
    yield result(
        "2 VPN", "WireGuard handshake", age <= HANDSHAKE_FRESH_S,
        f"{interface}: newest handshake {age} s ago ({len(stamps)} peer(s) seen), "
        f"fresh within {HANDSHAKE_FRESH_S} s",
    )  # fmt: skip


def agent_metrics(ctx: VerifyContext) -> tuple[dict[str, list[tuple[dict[str, str], float]]], int]:
    """The agent's metrics read on the node, by name, and the node's clock."""
    if "metrics" not in ctx.cache:
        metrics = ctx.data.get("agent_settings", {}).get("metrics", {})
        address = f"{metrics.get('listen', '127.0.0.1')}:{metrics.get('port', 9464)}"
        text = ctx.run(f"curl -sf --max-time 5 http://{address}/metrics && echo && date +%s",
                       sudo=False)  # fmt: skip
        body, _, clock = text.rstrip().rpartition("\n")
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((sample.labels, sample.value))
        ctx.cache["metrics"] = (samples, int(clock))
    cached: tuple[dict[str, list[tuple[dict[str, str], float]]], int] = ctx.cache["metrics"]
    return cached


TARGET_LABELS = ("kind", "subject", "database")


def _by_target(samples: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    """Samples keyed ``kind`` or ``kind/subject``, whatever other labels they carry."""
    return {
        "/".join(labels[k] for k in TARGET_LABELS if k in labels): value
        for labels, value in samples
    }


def _target_value(values: dict[str, float], target: str) -> float | None:
    """The value for ``kind/subject``, else for its kind (targets are set per kind)."""
    return values.get(target, values.get(target.split("/")[0]))


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def _within_rpo(
    newest: dict[str, float], rpo: dict[str, float], now: int, where: str = ""
) -> Iterator[CheckResult]:
    """One row per backup target: its newest backup's age against its RPO."""
    for target, stamp in sorted(newest.items()):
        target_rpo = _target_value(rpo, target)
        age = now - stamp
        yield result(
            "7 backups", f"{where}{target} backup within the RPO",
            target_rpo is not None and age <= target_rpo,
            f"newest {where}{age:.0f} s old, RPO {_seconds(target_rpo)} s",
        )  # fmt: skip


def _within_rto(
    results: dict[str, float], durations: dict[str, float], rto: dict[str, float],
    where: str = "", note: str = "",
) -> Iterator[CheckResult]:
    """One row per drill target: its last drill's result and time against its RTO."""
    if not results:
        yield result("7 backups", f"{where}restore drill within the RTO", False,
                     f"no {where}drill has run")  # fmt: skip
    for target, passed in sorted(results.items()):
        took = durations.get(target)
        target_rto = _target_value(rto, target)
        within = took is not None and target_rto is not None and took <= target_rto
        yield result(
            "7 backups", f"{where}{target} drill within the RTO", passed == 1 and within,
            f"last {where}drill {'passed' if passed == 1 else 'FAILED'} in "
            f"{'?' if took is None else f'{took:.1f}'} s{note}, RTO {_seconds(target_rto)} s",
        )  # fmt: skip


def check_agent(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 7: the agent runs, the newest backups are within the RPO, drills pass the RTO."""
    state = ctx.run("systemctl is-active socle-agent || true").strip()
    yield result("7 backups", "agent running", state == "active", f"socle-agent is {state}")
    samples, now = agent_metrics(ctx)
    newest = _by_target(samples.get("socle_backup_newest_timestamp_seconds", []))
    if not newest:
        yield result("7 backups", "backup within the RPO", False, "no backup in the catalogue")
    yield from _within_rpo(newest, _by_target(samples.get("socle_rpo_target_seconds", [])), now)
    yield from _within_rto(
        _by_target(samples.get("socle_drill_last_result", [])),
        _by_target(samples.get("socle_drill_last_duration_seconds", [])),
        _by_target(samples.get("socle_rto_target_seconds", [])),
    )


def check_offsite(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 7: off-site copies within the RPO, off-site drills within the RTO."""
    samples, now = agent_metrics(ctx)
    drills = _by_target(samples.get("socle_offsite_drill_last_result", []))
    newest = _by_target(samples.get("socle_offsite_newest_timestamp_seconds", []))
    if not drills and not newest:
        configured = "is set" if ctx.data.get("offsite") else "is not set"
        raise NotChecked(f"the agent publishes no off-site metrics (inventory key offsite "
                         f"{configured})")  # fmt: skip
    rpo = _by_target(samples.get("socle_offsite_rpo_target_seconds", []))
    yield from _within_rpo(newest, rpo, now, where="off-site ")
    yield from _within_rto(
        drills,
        _by_target(samples.get("socle_offsite_drill_last_duration_seconds", [])),
        _by_target(samples.get("socle_rto_target_seconds", [])),
        where="off-site ", note=" (fetch included)",
    )


def check_repository(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Repository: no secret in clear."""
    findings = scan_repository(ctx.repo)
    shown = "; ".join(str(f) for f in findings[:3]) + (" ..." if len(findings) > 3 else "")
    yield result(
        "repository", "no secret in clear", not findings,
        shown if findings else f"socle secrets check over {ctx.repo.name}: nothing found",
    )  # fmt: skip


CHECKS: tuple[tuple[str, Check], ...] = (
    ("1 baseline", check_public_ports),
    ("1 baseline", check_ssh_logins),
    ("2 VPN", check_wireguard),
    ("3 k3s", check_k3s_node),
    ("3 k3s", check_test_ingress),
    ("3 k3s", check_exposure),
    ("4 GitOps", check_argocd),
    ("5 monitoring", check_alertmanager),
    ("6 PostgreSQL", check_postgresql),
    ("7 backups", check_agent),
    ("7 backups", check_offsite),
    ("repository", check_repository),
)


def run_checks(
    ctx: VerifyContext, checks: Sequence[tuple[str, Check]] = CHECKS
) -> list[CheckResult]:
    """Run every check (all of them by default); one that cannot run says why."""
    return run_given_checks(ctx, checks)


def _verify_command(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from pyinfra.api.exceptions import PyinfraError


    started = now_utc()
    with ExitStack() as stack:
        try:
            hosts = load_hosts(args.inventory)
            host = args.host or (next(iter(hosts)) if len(hosts) == 1 else None)
            if host is None or host not in hosts:
                raise InventoryLookupError(f"choose a host with --host ({', '.join(hosts)})")
        except (InventoryLookupError, PyinfraError) as error:
            print(f"socle: {error}", file=sys.stderr)
            return 2
        try:
            node = stack.enter_context(node_session(args.inventory, host))
        except (InventoryLookupError, PyinfraError) as error:
            print(f"socle: {error}: the checks made on the node are not checked", file=sys.stderr)
            node = None
        context = VerifyContext(host_name=host, data=hosts[host], node=node, repo=args.repo,
                                test_alert=not args.no_test_alert)
        if args.all_ports:
            context.scan_ports = range(1, 65536)
        results = run_checks(context)
    report = render_markdown(host, results, started)
    sys.stdout.write(report)
    path = write_report(args.report_dir, host, report, started)
    print(f"report kept in {path}", file=sys.stderr)
    if overall(results) is Verdict.NO_GO:
        return 1
    if args.strict and any(r.verdict is Verdict.NOT_CHECKED for r in results):
        return 3
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `verify` to the `socle` command line."""
    verify = commands.add_parser(
        "verify",
        help="run each phase's proof against the host: a Go/No-Go report",
        description=(
            "Run the Go/No-Go checks against the host and print the report as Markdown; "
            "keep it in --report-dir. Exit 1 on No-Go; with --strict, exit 3 when a check "
            "could not run."
        ),
    )
    verify.add_argument("-i", "--inventory", type=Path, required=True)
    verify.add_argument("--host", help="the host, when the inventory has several")
    verify.add_argument("--report-dir", type=Path, default=Path("verify-reports"))
    verify.add_argument(
        "--repo", type=Path, default=REPO, help="the repository checked for secrets in clear"
    )
    verify.add_argument(
        "--all-ports", action="store_true", help="scan all 65535 TCP ports (slower)"
    )
    verify.add_argument(
        "--no-test-alert", action="store_true",
        help="do not send phase 5's test alert (it mails the operators)",
    )
    verify.add_argument("--strict", action="store_true", help="a check not run fails too")
    verify.set_defaults(handler=_verify_command)
