"""What `socle verify`'s checks are made of: verdicts, results, the context they read, the
report.

Each check runs one phase's proof and yields results with their evidence: **Go**,
**No-Go**, or **not checked** with the reason (no cluster yet, a stand-in, unreachable).
A check that raises is "not checked", never Go. The whole is No-Go when any check is.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from socle_cli.inventory import NodeSession

REPO = Path(__file__).resolve().parent.parent
# Ports worth a look when the whole range is not scanned: the well-known ones, every
# admin port socle uses, what Kubernetes components listen on, and the NodePort range.
DEFAULT_SCAN_PORTS: tuple[int, ...] = tuple(
    sorted(
        {*range(1, 1025), 2379, 2380, 3000, 5000, 5432, 6443, 8000, 8080, 8443, 8472,
         *range(9090, 9101), 9464, 9796, *range(10248, 10261), *range(30000, 32768)}
    )
)  # fmt: skip


class Verdict(StrEnum):
    """What a check concluded."""

    GO = "Go"
    NO_GO = "No-Go"
    NOT_CHECKED = "not checked"


@dataclass(frozen=True)
class CheckResult:
    """One line of the report: which phase, which check, the verdict and its evidence."""

    phase: str
    check: str
    verdict: Verdict
    evidence: str


class NotChecked(Exception):
    """The check could not run; the message says why."""


@dataclass
class VerifyContext:
    """What checks read: the host's inventory data, an SSH session, the repository.

    + scan_ports: the TCP ports tried from this machine on the public address
    + test_alert: whether phase 5's check sends a test alert (it pages the operators)
    """

    host_name: str
    data: dict[str, Any]
    node: NodeSession | None
    repo: Path = REPO
    scan_ports: Sequence[int] = DEFAULT_SCAN_PORTS
    test_alert: bool = True
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def public_address(self) -> str:
        """The address the public side sees: the SSH address of the inventory."""
        return str(self.data.get("ssh_hostname") or self.host_name)

    @property
    def vpn_address(self) -> str:
        """The node's WireGuard address (``wireguard_address``), where admin surfaces answer."""
        from socle.inventory_checks import vpn_interface

        return str(vpn_interface(self.data).ip)

    def run(self, command: str, sudo: bool = True) -> str:
        """Run ``command`` on the node; raise ``NotChecked`` when it cannot."""
        if self.node is None:
            raise NotChecked("no SSH session to the node")
        ok, output = self.node.run(command, sudo=sudo)
        if not ok:
            raise NotChecked(f"`{command}` failed on the node")
        return output

    def fact(self, fact: Any, **kwargs: Any) -> Any:
        """Read one of the project's facts from the node; ``NotChecked`` without a session."""
        if self.node is None:
            raise NotChecked("no SSH session to the node")
        return self.node.fact(fact, **kwargs)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per run: several checks read the same answer."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


Check = Callable[[VerifyContext], Iterable[CheckResult]]


def result(phase: str, check: str, ok: bool, evidence: str) -> CheckResult:
    """Go when ``ok``, else No-Go, with the evidence."""
    return CheckResult(phase, check, Verdict.GO if ok else Verdict.NO_GO, evidence)


def tcp_answers(address: str, port: int, timeout: float = 3.0) -> bool:
    """Whether ``address:port`` accepts a TCP connection from this machine."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def run_checks(ctx: VerifyContext, checks: Sequence[tuple[str, Check]]) -> list[CheckResult]:
    """Run every check; one that cannot run says why instead of passing."""
    results: list[CheckResult] = []
    for phase, check in checks:
        name = (check.__doc__ or check.__name__).split(":", 1)[-1].strip().rstrip(".")
        name = name.splitlines()[0].rstrip(".")
        try:
            results.extend(check(ctx))
        except NotChecked as reason:
            results.append(CheckResult(phase, name, Verdict.NOT_CHECKED, str(reason)))
        except Exception as error:  # noqa: BLE001 - any failure to check is reported as such
            results.append(
                CheckResult(phase, name, Verdict.NOT_CHECKED, f"{type(error).__name__}: {error}")
            )
    return results


def overall(results: Sequence[CheckResult]) -> Verdict:
    """No-Go if any check is No-Go, else Go (checks not checked are listed, never Go)."""
    return Verdict.NO_GO if any(r.verdict is Verdict.NO_GO for r in results) else Verdict.GO


def render_markdown(host: str, results: Sequence[CheckResult], when: datetime) -> str:
    """The report kept as evidence: the verdict, then one table row per check."""
    verdict = overall(results)
    unchecked = sum(r.verdict is Verdict.NOT_CHECKED for r in results)
    lines = [
        f"# socle verify: {host}, {when.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "",
        f"**{verdict.value}**" + (f" ({unchecked} not checked)" if unchecked else ""),
        "",
        "| phase | check | verdict | evidence |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r.phase} | {r.check} | {r.verdict.value} | {_cell(r.evidence)} |" for r in results
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def write_report(folder: Path, host: str, text: str, when: datetime) -> Path:
    """Write the Markdown report as ``verify-<host>-<UTC time>.md`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"verify-{host}-{when.strftime('%Y%m%dT%H%M%SZ')}.md"
    path.write_text(text)
    return path


def now_utc() -> datetime:
    """The report's timestamp."""
    return datetime.now(UTC)
