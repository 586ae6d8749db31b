"""Phase 1 proven from outside: public surface, SSH logins, reboot, idempotence, guards."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.hosts import Harness, TestHost, changed_operations
from tests.hosts.probes import (
    key_login,
    password_login,
    scan_tcp,
    start_listener,
    stop_listener,
    tcp_answers,
    wait_until,
)

pytestmark = pytest.mark.host

DEPLOY = "deploys/baseline.py"


@dataclass
class Deployed:
    node: TestHost
    scanner: TestHost
    hosts_file: Path
    first_run: str


@pytest.fixture(scope="module")
def deployed(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    node = harness.start("base-node", networks=("public",))
    scanner = harness.start("base-scanner", networks=("public",))
    hosts_file = harness.write_hosts_file(
        tmp_path_factory.mktemp("baseline") / "hosts.json", [node]
    )
    first = harness.run_pyinfra(hosts_file, DEPLOY, "--json")
    yield Deployed(node, scanner, hosts_file, first.stdout)
    harness.remove(node)
    harness.remove(scanner)


def test_first_run_hardens_ssh_and_enables_the_firewall(deployed: Deployed) -> None:
    changed = changed_operations(deployed.first_run)

    assert "SSH: keys only, no root login, modern algorithms" in changed
    assert "Firewall: deny incoming, the public surface and the VPN's admin ports" in changed


def test_second_run_changes_nothing(harness: Harness, deployed: Deployed) -> None:
    second = harness.run_pyinfra(deployed.hosts_file, DEPLOY, "--json")

    assert changed_operations(second.stdout) == []


def test_rules_and_policy_changed_by_hand_are_put_back(
    harness: Harness, deployed: Deployed
) -> None:
    deployed.node.exec(
        "ufw allow 8080/tcp comment 'opened by hand' "
        "&& ufw route allow in on wg0 to 10.99.0.0/16 "
        "&& ufw default allow incoming"
    )

    run = harness.run_pyinfra(deployed.hosts_file, DEPLOY, "--json")

    assert changed_operations(run.stdout) == [
        "Firewall: deny incoming, the public surface and the VPN's admin ports"
    ]
    added = deployed.node.exec("ufw show added").stdout
    assert "8080" not in added and "10.99.0.0/16" not in added
    assert "Default: deny (incoming)" in deployed.node.exec("ufw status verbose").stdout


def test_only_ssh_answers_a_full_tcp_scan(deployed: Deployed) -> None:
    assert scan_tcp(deployed.scanner, deployed.node.address) == [22]


def test_web_ports_are_allowed_and_admin_ports_are_not(deployed: Deployed) -> None:
    start_listener(deployed.node, [80, 443, 5432, 6443])
    try:
        reachable = {
            port: tcp_answers(deployed.scanner, deployed.node.address, port)
            for port in (80, 443, 5432, 6443)
        }
        # The same listener answers on the node itself: only the firewall stands between.
        local = tcp_answers(deployed.node, "127.0.0.1", 5432)
    finally:
        stop_listener(deployed.node)

    assert reachable == {80: True, 443: True, 5432: False, 6443: False}
    assert local


def test_ufw_reports_the_designed_policy(deployed: Deployed) -> None:
    status = deployed.node.ssh("sudo ufw status verbose").stdout

    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in status


def test_password_logins_are_refused_where_the_same_probe_succeeds_elsewhere(
    deployed: Deployed,
) -> None:
    # The scanner is an untouched host: the probe does log in there, so a refusal on the
    # node is the baseline's doing, not a broken probe.
    assert password_login(deployed.scanner.address, "ubuntu", "ubuntu").returncode == 0

    for user, password in (("ubuntu", "ubuntu"), ("root", "root")):
        attempt = password_login(deployed.node.address, user, password)
        assert attempt.returncode == 255, attempt
        assert "Permission denied (publickey)" in attempt.stderr


def test_root_login_is_refused_even_with_an_authorized_key(deployed: Deployed) -> None:
    node = deployed.node
    node.exec(
        "install -d -m 700 /root/.ssh && "
        "cp /home/ubuntu/.ssh/authorized_keys /root/.ssh/authorized_keys"
    )
    try:
        as_root = key_login(node.address, "root", str(node.key_path))
        as_ubuntu = key_login(node.address, "ubuntu", str(node.key_path))
    finally:
        node.exec("rm -f /root/.ssh/authorized_keys")

    assert as_root.returncode == 255 and "Permission denied" in as_root.stderr
    assert as_ubuntu.returncode == 0


def test_everything_holds_after_a_reboot(harness: Harness, deployed: Deployed) -> None:
    deployed.node.restart()

    assert deployed.node.ssh("sudo ufw status").stdout.startswith("Status: active")
    # The restarted container has a new MAC address: let the scanner's neighbour cache
    # catch up before scanning.
    wait_until(
        lambda: tcp_answers(deployed.scanner, deployed.node.address, 22),
        "the scanner to reach the restarted node",
    )
    assert scan_tcp(deployed.scanner, deployed.node.address) == [22]
    attempt = password_login(deployed.node.address, "ubuntu", "ubuntu")
    assert attempt.returncode == 255 and "Permission denied (publickey)" in attempt.stderr
    assert deployed.node.ssh("sudo sysctl -n net.ipv4.conf.all.accept_redirects").stdout == "0\n"
    again = harness.run_pyinfra(deployed.hosts_file, DEPLOY, "--json")
    assert changed_operations(again.stdout) == []


# Lock-out guards, each on a fresh host that must come out untouched.

SNAPSHOT = (
    "ufw status verbose; ls -la /etc/ssh/sshd_config.d /etc/sysctl.d /etc/wireguard 2>&1; "
    "sha256sum /etc/ssh/sshd_config.d/* /etc/sysctl.d/* /etc/ufw/user.rules "
    "/etc/default/ufw /etc/ufw/ufw.conf 2>&1; ip -o link; dpkg-query -W | sha256sum"
)


@pytest.fixture(scope="module")
def fresh_node(harness: Harness) -> Iterator[TestHost]:
    node = harness.start("guard-node", networks=("public",))
    yield node
    harness.remove(node)


GUARD_CASES = [
    pytest.param(
        DEPLOY, {"ssh_deploy_user": "root"}, "ssh_password_login", id="no-authorized-key"
    ),
    pytest.param(DEPLOY, {"ufw_public_tcp": [80, 443]}, "ufw_public_tcp", id="ssh-port-closed"),
    pytest.param(
        DEPLOY,
        {"sshd_settings": {"AllowUsers": "alice"}},
        "sshd_settings.AllowUsers",
        id="sshd-allows-other-users-only",
    ),
    pytest.param(
        DEPLOY,
        {"sshd_settings": {"PubkeyAcceptedAlgorithms": "rsa-sha2-512,rsa-sha2-256"}},
        "sshd_settings.PubkeyAcceptedAlgorithms",
        id="sshd-refuses-the-deploy-key-type",
    ),
    pytest.param(
        DEPLOY,
        {"wireguard_admin_tcp_ports": [6443, 443]},
        "wireguard_admin_tcp_ports[1]",
        id="admin-port-public",
    ),
    pytest.param(
        "deploys/wireguard.py",
        {"cluster_pod_cidr": "10.8.0.0/16"},
        "cluster_pod_cidr",
        id="overlapping-ranges",
    ),
    pytest.param(
        "deploys/wireguard.py",
        {"wireguard_address": "10.8.0.0/24"},
        "wireguard_address",
        id="invalid-vpn-address",
    ),
    pytest.param(
        "deploys/wireguard.py",
        {"wireguard_peers": [{"name": "a", "public_key": "abc=", "address": "10.8.0.2"}]},
        "wireguard_peers[0].public_key",
        id="malformed-key",
    ),
    pytest.param(
        "deploys/wireguard.py",
        {
            "wireguard_peers": [
                {
                    "name": "a",
                    "public_key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
                    "address": "10.8.0.2",
                },
                {
                    "name": "b",
                    "public_key": "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=",
                    "address": "10.8.0.2",
                },
            ]
        },
        "wireguard_peers[1].address",
        id="duplicate-peer-address",
    ),
]


@pytest.mark.parametrize(("deploy", "bad_data", "key"), GUARD_CASES)
def test_guard_stops_the_deploy_before_any_change(
    harness: Harness,
    fresh_node: TestHost,
    tmp_path: Path,
    deploy: str,
    bad_data: dict[str, object],
    key: str,
) -> None:
    hosts_file = harness.write_hosts_file(
        tmp_path / "hosts.json", [fresh_node], data={fresh_node.name: bad_data}
    )
    before = fresh_node.exec(SNAPSHOT).stdout

    run = harness.run_pyinfra(hosts_file, deploy, check=False)

    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert f"inventory key {key!r}" in output, output
    assert "Starting operation" not in output
    assert fresh_node.exec(SNAPSHOT).stdout == before
    assert "Status: inactive" in before, "the guard host was changed by an earlier test"


def test_guard_refuses_sshd_settings_that_would_refuse_a_small_rsa_key(
    harness: Harness, fresh_node: TestHost, tmp_path: Path
) -> None:
    # The operator's key is a 2048-bit RSA key: socle's RequiredRSASize 3072 would lock
    # them out, so the deploy stops before any change, naming the setting.
    key_file = tmp_path / "operator_rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(key_file)],
        check=True,
    )
    public = key_file.with_suffix(".pub").read_text().strip()
    keys = "/home/ubuntu/.ssh/authorized_keys"
    fresh_node.exec(f"cp {keys} {keys}.saved && echo {shlex.quote(public)} >> {keys}")
    try:
        hosts_file = harness.write_hosts_file(tmp_path / "hosts.json", [fresh_node])
        before = fresh_node.exec(SNAPSHOT).stdout
        run = harness.run_pyinfra(hosts_file, DEPLOY, check=False)
        after = fresh_node.exec(SNAPSHOT).stdout
    finally:
        fresh_node.exec(f"mv -f {keys}.saved {keys}")

    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "inventory key 'sshd_settings.RequiredRSASize'" in output, output
    assert "2048-bit RSA key" in output
    assert "Starting operation" not in output
    assert after == before


def test_guard_host_data_reaches_the_deploy(fresh_node: TestHost, tmp_path: Path) -> None:
    # The hosts file really carries the bad data (a guard test cannot pass vacuously).
    entry = fresh_node.inventory_entry({"ufw_public_tcp": [80]})
    assert json.loads(json.dumps(entry))["data"] == {"ufw_public_tcp": [80]}
