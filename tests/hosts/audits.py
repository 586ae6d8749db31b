"""Outside measures of a host's hardening: ssh-audit from another test host, Lynis inside.

Neither tool is part of socle's deploys: ssh-audit (the pinned PyPI package of the test
extra) is copied from this machine's environment into the auditing host and run there
with its python3; Lynis is installed by the test, from the distribution, into the host it
measures.
"""

from __future__ import annotations

import io
import json
import shlex
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ssh_audit

from tests.harness.hosts import TestHost

SSH_AUDIT_DIR = "/opt/socle-test-ssh-audit"
ALGORITHM_SECTIONS = ("kex", "key", "enc", "mac")


def _ssh_audit_archive() -> bytes:
    package = Path(ssh_audit.__file__).resolve().parent
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(
            package,
            arcname="ssh_audit",
            filter=lambda info: None if "__pycache__" in info.name else info,
        )
    return buffer.getvalue()


def ssh_audit_report(auditor: TestHost, address: str, port: int = 22) -> dict[str, Any]:
    """Run ssh-audit on ``auditor`` against ``address`` and return its JSON report.

    The DHEat connection-rate test is skipped: it opens dozens of connections in a
    second, which is what the node's SSH ban exists to stop (and it only ever informs).
    """
    auditor.exec(["mkdir", "-p", SSH_AUDIT_DIR])
    auditor.container.put_archive(SSH_AUDIT_DIR, _ssh_audit_archive())
    program = (
        f"import sys; sys.path.insert(0, {SSH_AUDIT_DIR!r}); "
        "from ssh_audit.ssh_audit import main; "
        f"sys.argv = ['ssh-audit', '-j', '--skip-rate-test', '-p', {str(port)!r}, {address!r}]; "
        "main()"
    )
    result = auditor.exec(["python3", "-c", program], check=False)
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise AssertionError(
            f"ssh-audit gave no report (exit {result.returncode}): {result.stdout}"
            f"{result.stderr}"
        ) from error
    return report


def ssh_audit_failures(report: dict[str, Any]) -> list[str]:
    """Every ``[fail]`` of a report, as ``section algorithm: reason``, and every CVE."""
    failures = []
    for section in ALGORITHM_SECTIONS:
        for entry in report.get(section, []):
            for reason in entry.get("notes", {}).get("fail", []):
                failures.append(f"{section} {entry['algorithm']}: {reason}")
    for cve in report.get("cves", []):
        failures.append(f"cve {cve.get('name')}: {cve.get('description')}")
    return failures


@dataclass
class LynisResult:
    """What a Lynis run found: the hardening index and its suggestions and warnings."""

    host: str
    index: int
    suggestions: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)


def parse_lynis_report(host: str, report: str) -> LynisResult:
    """Parse ``/var/log/lynis-report.dat``: ``hardening_index=`` and the
    ``suggestion[]=ID|text|details|solution|`` lines (warnings alike)."""
    index = -1
    suggestions: list[tuple[str, str, str]] = []
    warnings: list[tuple[str, str, str]] = []
    for line in report.splitlines():
        if line.startswith("hardening_index="):
            index = int(line.split("=", 1)[1])
        for prefix, found in (("suggestion[]=", suggestions), ("warning[]=", warnings)):
            if line.startswith(prefix):
                test_id, text, details, *_ = (line[len(prefix) :] + "|||").split("|")
                found.append((test_id, text, details))
    if index < 0:
        raise AssertionError(f"no hardening index in {host}'s Lynis report")
    return LynisResult(host, index, suggestions, warnings)


def lynis_audit(target: TestHost) -> LynisResult:
    """Install Lynis from the distribution into ``target``, run a quick audit there, and
    return what it reported (about a minute)."""
    target.exec(
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -q --no-install-recommends lynis >/dev/null"
    )
    target.exec("lynis audit system --quick --no-colors >/dev/null 2>&1")
    report = target.exec(["cat", "/var/log/lynis-report.dat"]).stdout
    return parse_lynis_report(target.name, report)


def failing_logins(client: TestHost, address: str, count: int, user: str = "ubuntu") -> None:
    """Try ``count`` SSH logins from ``client`` without any key: each one fails."""
    # A ban can land between the TCP connection and the key exchange, after which the
    # server stays silent: bound each attempt, or the client would wait forever.
    attempt = (
        "timeout 20 ssh -o BatchMode=yes -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -o ServerAliveInterval=2 "
        "-o ServerAliveCountMax=2 -o PubkeyAuthentication=no -o IdentityFile=/dev/null "
        f"{shlex.quote(user)}@{address} true"
    )
    for _ in range(count):
        client.exec(attempt, check=False)
