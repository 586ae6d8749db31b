"""`socle verify` on a node with the platform (phase 3 on the stand-in k3s): Go when
healthy, No-Go naming the phase and the evidence after each kind of breakage (a public
port, a secret committed in clear, a failing drill, the agent stopped past the RPO).

The node's PostgreSQL is a stand-in (a real server on the node), as in the agent's tests.
"""

from __future__ import annotations

import copy
import runpy
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.hosts import REPO_ROOT, Harness, TestHost
from tests.hosts.admin import agent_node_data, connect_admin, new_admin_key, socle_command
from tests.hosts.k3s_node import standin_k3s_data
from tests.hosts.probes import start_listener, stop_listener
from tests.sops_files import write_sops_file

pytestmark = pytest.mark.host

RPO_S = 25


@dataclass
class VerifiedNode:
    node: TestHost
    hosts_file: Path
    workdir: Path


def agent_settings_with_short_rpo() -> dict[str, object]:
    settings = copy.deepcopy(
        runpy.run_path(str(REPO_ROOT / "inventories" / "group_data" / "test.py"))["agent_settings"]
    )
    settings["drill"]["rpo_seconds"]["postgres"] = RPO_S
    return settings


@pytest.fixture(scope="module")
def verified(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerifiedNode]:
    workdir = tmp_path_factory.mktemp("verify")
    node = harness.start("verify-node", networks=("public",))
    admin = harness.start("verify-admin", networks=("public",))
    password = secrets.token_urlsafe(18)
    sops_file, key_file = write_sops_file(workdir, {"postgres_password": password})
    admin_key, admin_public = new_admin_key(workdir)
    data = {**agent_node_data(admin_public, password, sops_file), **standin_k3s_data(workdir),
            "agent_settings": agent_settings_with_short_rpo()}  # fmt: skip
    hosts_file = harness.write_hosts_file(workdir / "hosts.json", [node], data={node.name: data})
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("SOPS_AGE_KEY_FILE", str(key_file))
        harness.run_pyinfra(hosts_file, "tests/hosts/deploys/postgres_standin.py")
        harness.run_pyinfra(hosts_file, "deploys/all.py")
        connect_admin(hosts_file, admin, admin_key)
        yield VerifiedNode(node, hosts_file, workdir)
    harness.remove(admin)
    harness.remove(node)


def verify(env: VerifiedNode, *args: str) -> tuple[int, str]:
    reports = env.workdir / "reports"
    proc = socle_command(env.hosts_file, "verify", "-i", "inventories/test.py",
                         "--report-dir", str(reports), *args)  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    kept = sorted(reports.glob(f"verify-{env.node.name}-*.md"))
    assert kept and kept[-1].read_text() == proc.stdout
    return proc.returncode, proc.stdout


def row(report: str, check: str) -> str:
    return next(line for line in report.splitlines() if f"| {check} |" in line)


def fresh_backup_and_drill(node: TestHost) -> None:
    node.ssh("sudo socle-agent backup postgres && sudo socle-agent drill postgres")


def test_a_healthy_node_is_go_with_its_evidence(verified: VerifiedNode) -> None:
    fresh_backup_and_drill(verified.node)

    code, report = verify(verified)

    assert code == 0, report
    assert "**Go**" in report
    assert "open [22]" in row(report, "public TCP ports")
    assert "| Go |" in row(report, "postgres drill within the RTO")
    assert "| Go |" in row(report, "WireGuard handshake")


def test_a_port_opened_on_the_public_side_is_no_go(verified: VerifiedNode) -> None:
    node = verified.node
    fresh_backup_and_drill(node)
    node.exec("ufw allow 8080/tcp")
    start_listener(node, [8080])
    try:
        code, report = verify(verified)
    finally:
        stop_listener(node)
        node.exec("ufw delete allow 8080/tcp")

    assert code == 1
    assert "**No-Go**" in report
    assert "| 1 baseline | public TCP ports | No-Go |" in report
    assert "NOT ALLOWED: [8080]" in report


def test_a_secret_committed_in_clear_is_no_go(verified: VerifiedNode, tmp_path: Path) -> None:
    fresh_backup_and_drill(verified.node)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "values.yaml").write_text("db:\n  password: Wq3" + "xLp9vTz2RkNc\n")

    code, report = verify(verified, "--repo", str(tmp_path))

    assert code == 1
    assert "values.yaml:2: a secret-named value in clear (password)" in row(
        report, "no secret in clear"
    )


def test_a_failing_drill_is_no_go(verified: VerifiedNode) -> None:
    node = verified.node
    node.ssh("sudo socle-agent backup postgres")
    # One byte flipped in the largest file of the newest backup, whatever its format.
    node.exec(
        "d=$(ls -td /var/backups/socle/postgres/*/ | head -1); "
        "f=$(find \"$d\" -type f ! -name manifest.json -printf '%s %p\\n' | sort -n "
        "| tail -1 | cut -d' ' -f2); printf X | dd of=\"$f\" bs=1 seek=64 conv=notrunc"
    )
    node.ssh("sudo socle-agent drill postgres", check=False)

    code, report = verify(verified)

    assert code == 1
    assert "FAILED" in row(report, "postgres drill within the RTO")


def test_the_agent_stopped_past_the_rpo_is_no_go(verified: VerifiedNode) -> None:
    node = verified.node
    fresh_backup_and_drill(node)
    node.ssh("sudo systemctl stop socle-agent")
    try:
        time.sleep(RPO_S + 2)
        code, report = verify(verified)
    finally:
        node.ssh("sudo systemctl start socle-agent")

    assert code == 1
    assert "**No-Go**" in report
    assert "| 7 backups | agent running | No-Go | socle-agent is inactive |" in report
