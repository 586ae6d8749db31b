"""Phase 7 proven on a test host: the agent under systemd backs up, drills, and serves
its metrics over the VPN only.

The node's PostgreSQL is a stand-in (a real server on the node, see
tests/hosts/deploys/postgres_standin.py): production runs it in k3s, which cannot run here.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.hosts import Harness, TestHost, changed_operations
from tests.hosts.admin import agent_node_data, connect_admin, new_admin_key
from tests.hosts.probes import tcp_answers, wait_until
from tests.sops_files import write_sops_file

pytestmark = pytest.mark.host

VPN_ADDRESS = "10.8.0.1"
METRICS = f"http://{VPN_ADDRESS}:9464/metrics"


@dataclass
class AgentNode:
    node: TestHost
    peer: TestHost
    hosts_file: Path
    password: str
    first_run: str
    data: dict[str, object]


@pytest.fixture(scope="module")
def agent_node(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentNode]:
    workdir = tmp_path_factory.mktemp("agent")
    node = harness.start("agent-node", networks=("public",))
    peer = harness.start("agent-peer", networks=("public",))
    password = secrets.token_urlsafe(18)
    sops_file, key_file = write_sops_file(workdir, {"postgres_password": password})
    peer_key_file, peer_public_key = new_admin_key(workdir)
    data = agent_node_data(peer_public_key, password, sops_file)
    hosts_file = harness.write_hosts_file(workdir / "hosts.json", [node], data={node.name: data})
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("SOPS_AGE_KEY_FILE", str(key_file))
        for deploy in ("deploys/baseline.py", "deploys/wireguard.py",
                       "tests/hosts/deploys/postgres_standin.py"):
            harness.run_pyinfra(hosts_file, deploy)
        first = harness.run_pyinfra(hosts_file, "deploys/agent.py", "--json")
        connect_admin(hosts_file, peer, peer_key_file)
        yield AgentNode(node, peer, hosts_file, password, first.stdout, data)
    harness.remove(peer)
    harness.remove(node)


def metrics_from(peer: TestHost) -> str:
    return peer.exec(["curl", "-sf", "--max-time", "5", METRICS]).stdout


def test_agent_runs_under_systemd_and_is_ready(agent_node: AgentNode) -> None:
    node = agent_node.node

    wait_until(
        lambda: node.ssh("systemctl is-active socle-agent", check=False).stdout.strip()
        == "active",
        "socle-agent active",
    )
    unit = node.ssh("systemctl show socle-agent -p Type -p NRestarts -p User").stdout
    assert "Type=notify" in unit and "NRestarts=0" in unit


def test_a_job_run_by_the_daemon_works_inside_the_units_sandbox(agent_node: AgentNode) -> None:
    # The first start catches up the backup missed "while the agent was down": it runs in
    # the unit (no capabilities, syscall filter, /proc limited, only the metrics port).
    node = agent_node.node

    def journal() -> str:
        return node.ssh("sudo journalctl -u socle-agent --no-pager -o cat", check=False).stdout

    wait_until(lambda: "postgres_backup: ok" in journal() or "postgres_backup: FAILED" in journal(),
               "the daemon's first backup")
    assert "postgres_backup: ok" in journal(), journal()[-3000:]
    shown = node.ssh("systemctl show socle-agent -p NRestarts -p CapabilityBoundingSet "
                     "-p SocketBindAllow -p ProtectProc").stdout
    assert "NRestarts=0" in shown and "CapabilityBoundingSet=\n" in shown + "\n"
    [bind] = [line for line in shown.splitlines() if line.startswith("SocketBindAllow=")]
    assert bind.endswith("9464") and "ProtectProc=invisible" in shown


def test_secret_is_root_only_and_never_shown(harness: Harness, agent_node: AgentNode) -> None:
    node = agent_node.node
    shown = harness.run_pyinfra(agent_node.hosts_file, "deploys/agent.py", "--dry", "--diff", "-vv")

    assert node.ssh("sudo stat -c '%a %U' /etc/socle/postgres-password").stdout == "600 root\n"
    assert node.ssh("sudo cat /etc/socle/postgres-password").stdout.strip() == agent_node.password
    assert agent_node.password not in shown.stdout + shown.stderr + agent_node.first_run
    modes = node.ssh("sudo stat -c '%a' /etc/socle/agent.toml /var/backups/socle").stdout
    assert modes.split() == ["600", "700"]


def test_backup_then_drill_restores_the_database_within_the_rto(agent_node: AgentNode) -> None:
    node = agent_node.node

    node.ssh("sudo socle-agent backup postgres")
    listed = node.ssh("sudo socle-agent list").stdout
    drill = node.ssh("sudo socle-agent drill postgres", check=False)

    assert "app" in listed
    assert drill.returncode == 0, drill.stdout + drill.stderr
    files = node.ssh("sudo find /var/backups/socle -type f -printf '%m\\n' | sort -u").stdout
    assert files.split() == ["600"]
    scratch = node.ssh(
        "sudo runuser -u postgres -- psql -tAc \"SELECT count(*) FROM pg_database "
        "WHERE datname LIKE 'socle_drill_%'\""
    ).stdout.strip()
    assert scratch == "0"


def test_metrics_reach_admins_over_the_vpn_only(agent_node: AgentNode) -> None:
    node, peer = agent_node.node, agent_node.peer
    node.ssh("sudo socle-agent backup postgres")
    wait_until(lambda: tcp_answers(peer, VPN_ADDRESS, 9464), "the agent's metrics over the VPN")

    metrics = metrics_from(peer)

    assert 'socle_job_last_status{task="postgres_backup"} 1.0' in metrics
    assert "socle_agent_info" in metrics
    assert not tcp_answers(peer, node.address, 9464)


def test_second_run_changes_nothing(harness: Harness, agent_node: AgentNode) -> None:
    second = harness.run_pyinfra(agent_node.hosts_file, "deploys/agent.py", "--json")

    assert changed_operations(second.stdout) == []


def test_bad_settings_stop_the_deploy_before_the_node_changes(
    harness: Harness, agent_node: AgentNode, tmp_path: Path
) -> None:
    node = agent_node.node
    before = node.ssh("sudo sha256sum /etc/socle/agent.toml").stdout
    settings = json.loads(json.dumps(agent_node.data))
    settings["agent_settings"] = {"retention": {"keep_dialy": 7}}
    hosts_file = harness.write_hosts_file(
        tmp_path / "hosts.json", [node], data={node.name: settings}
    )

    proc = harness.run_pyinfra(hosts_file, "deploys/agent.py", check=False)

    assert proc.returncode != 0
    assert "agent_settings.retention.keep_dialy: unknown key" in proc.stdout + proc.stderr
    assert node.ssh("sudo sha256sum /etc/socle/agent.toml").stdout == before


def test_agent_comes_back_after_a_reboot(agent_node: AgentNode) -> None:
    node, peer = agent_node.node, agent_node.peer
    node.ssh("sudo socle-agent backup postgres")

    node.restart()

    wait_until(
        lambda: node.ssh("systemctl is-active socle-agent", check=False).stdout.strip()
        == "active",
        "socle-agent active after the reboot",
    )
    wait_until(lambda: tcp_answers(peer, VPN_ADDRESS, 9464), "metrics after the reboot")
    assert 'socle_job_last_status{task="postgres_backup"} 1.0' in metrics_from(peer)
