"""`socle verify` on the platform node (tests/hosts/conftest.py): Go when healthy, with what
it could not check listed and why; No-Go naming the phase and the evidence after each kind
of breakage (a public port, a NodePort Service, a secret committed in clear, a failing
drill, the agent stopped past the RPO).

k3s is the stand-in there: what it says is never Go ("not checked: k3s is a stand-in"),
but a fault it shows is No-Go. The node's PostgreSQL is a stand-in too (a real server on
the node), as in the agent's tests.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.hosts.conftest import POSTGRES_RPO_S, PlatformNode
from tests.hosts.k3s_node import apply, kubectl
from tests.hosts.probes import start_listener, stop_listener

pytestmark = pytest.mark.host


def verify(deployed: PlatformNode, *args: str) -> tuple[int, str]:
    """Run `socle verify` as an operator would; check the report kept is the one printed."""
    reports = deployed.workdir / "reports"
    started = time.monotonic()
    proc = deployed.socle("verify", "-i", "inventories/test.py", "--report-dir", str(reports),
                          *args)  # fmt: skip
    print(f"socle verify took {time.monotonic() - started:.1f} s")
    assert proc.returncode in (0, 1), proc.stderr
    kept = sorted(reports.glob(f"verify-{deployed.node.name}-*.md"))
    assert kept and kept[-1].read_text() == proc.stdout
    return proc.returncode, proc.stdout


def row(report: str, check: str) -> str:
    return next(line for line in report.splitlines() if f"| {check} |" in line)


def fresh_backup_and_drill(deployed: PlatformNode) -> None:
    deployed.node.ssh("sudo socle-agent backup postgres && sudo socle-agent drill postgres")


def test_a_healthy_node_is_go_and_lists_what_it_could_not_check(deployed: PlatformNode) -> None:
    fresh_backup_and_drill(deployed)

    code, report = verify(deployed)
    print(report)

    assert code == 0, report
    assert "**Go**" in report
    for check in ("public TCP ports", "password login refused", "root login refused",
                  "WireGuard handshake", "agent running", "postgres/app backup within the RPO",
                  "postgres drill within the RTO", "no secret in clear"):  # fmt: skip
        assert "| Go |" in row(report, check), check
    assert "open [22]" in row(report, "public TCP ports")
    stand_in = {
        "node Ready with the pinned k3s": "k3s is a stand-in: platform-node Ready running",
        "nothing public in the cluster": "k3s is a stand-in: all allowed: ",
        "applications Synced and Healthy": "k3s is a stand-in: 7 Synced and Healthy",
        "Alertmanager's notification failures, and a test alert sent":
            "k3s is a stand-in: Alertmanager does not run in it",
        "PostgreSQL write and read back over the VPN":
            "k3s is a stand-in: PostgreSQL does not run in it",
    }  # fmt: skip
    for check, evidence in stand_in.items():
        assert f"| not checked | {evidence}" in row(report, check), check
    assert "externalIPs 5432 on 10.8.0.1" in row(report, "nothing public in the cluster")
    assert "| not checked | the test ingress is not installed" in row(
        report, "the test ingress answers on port 80")
    assert "| not checked | the agent publishes no off-site metrics" in row(
        report, "off-site copies within the RPO, off-site drills within the RTO")


def test_a_port_opened_on_the_public_side_is_no_go(deployed: PlatformNode) -> None:
    node = deployed.node
    fresh_backup_and_drill(deployed)
    node.exec("ufw allow 8080/tcp")
    start_listener(node, [8080])
    try:
        code, report = verify(deployed)
    finally:
        stop_listener(node)
        node.exec("ufw delete allow 8080/tcp")

    assert code == 1
    assert "**No-Go**" in report
    assert "| 1 baseline | public TCP ports | No-Go |" in report
    assert "NOT ALLOWED: [8080]" in report


def test_a_node_port_service_is_no_go_naming_it(deployed: PlatformNode) -> None:
    node = deployed.node
    fresh_backup_and_drill(deployed)
    leaks = [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "leaky-web", "namespace": "default"},
         "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "grafana-public", "namespace": "monitoring"},
         "spec": {"ports": [{"port": 3000}], "externalIPs": [node.address]}},
    ]  # fmt: skip
    apply(node, *leaks)
    try:
        code, report = verify(deployed)
    finally:
        kubectl(node, "delete", "service", "leaky-web", "-n", "default")
        kubectl(node, "delete", "service", "grafana-public", "-n", "monitoring")

    line = row(report, "nothing public in the cluster")
    assert code == 1
    assert "| 3 k3s | nothing public in the cluster | No-Go | PUBLIC: " in line
    assert "Service leaky-web in namespace default: NodePort 30080" in line
    assert f"Service grafana-public in namespace monitoring: externalIPs 3000 on {node.address}" \
        in line
    # what the VPN address carries stays allowed
    assert "kps-grafana" not in line


def test_a_secret_committed_in_clear_is_no_go(deployed: PlatformNode, tmp_path: Path) -> None:
    fresh_backup_and_drill(deployed)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "values.yaml").write_text("db:\n  password: Wq3" + "xLp9vTz2RkNc\n")

    code, report = verify(deployed, "--repo", str(tmp_path))

    assert code == 1
    assert "values.yaml:2: a secret-named value in clear (password)" in row(
        report, "no secret in clear"
    )


def test_a_failing_drill_is_no_go(deployed: PlatformNode) -> None:
    node = deployed.node
    node.ssh("sudo socle-agent backup postgres")
    # One byte flipped in the largest file of the newest backup, whatever its format.
    node.exec(
        "d=$(ls -td /var/backups/socle/postgres/*/ | head -1); "
        "f=$(find \"$d\" -type f ! -name manifest.json -printf '%s %p\\n' | sort -n "
        "| tail -1 | cut -d' ' -f2); printf X | dd of=\"$f\" bs=1 seek=64 conv=notrunc"
    )
    node.ssh("sudo socle-agent drill postgres", check=False)

    code, report = verify(deployed)

    assert code == 1
    assert "FAILED" in row(report, "postgres drill within the RTO")


def test_the_agent_stopped_past_the_rpo_is_no_go(deployed: PlatformNode) -> None:
    node = deployed.node
    fresh_backup_and_drill(deployed)
    node.ssh("sudo systemctl stop socle-agent")
    try:
        time.sleep(POSTGRES_RPO_S + 2)
        code, report = verify(deployed)
    finally:
        node.ssh("sudo systemctl start socle-agent")

    assert code == 1
    assert "**No-Go**" in report
    assert "| 7 backups | agent running | No-Go | socle-agent is inactive |" in report
