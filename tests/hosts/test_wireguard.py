"""Phase 2 proven from a peer: handshake, the tunnel, admin ports closed outside, reboot."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from socle.wireguard_keys import generate_private_key, public_key_of
from tests.harness.hosts import Harness, TestHost, changed_operations
from tests.hosts.admin import install_client_config, socle_command
from tests.hosts.probes import start_listener, stop_listener, tcp_answers, wait_until
from tests.sops_files import write_sops_file

pytestmark = pytest.mark.host

SERVER_VPN_ADDRESS = "10.8.0.1"
POD_ADDRESS = "10.42.0.5"


@dataclass
class Vpn:
    node: TestHost
    peer: TestHost
    hosts_file: Path
    client_config: str
    peer_public_key: str
    server_public_key: str


def add_pod_network(node: TestHost) -> None:
    """Stand in for the cluster's pod network: a namespace at 10.42.0.5 behind a veth."""
    node.exec(
        "ip netns add pod && ip link add vpod type veth peer name vpod-ns "
        "&& ip link set vpod-ns netns pod && ip addr add 10.42.0.1/24 dev vpod "
        "&& ip link set vpod up && ip netns exec pod ip addr add 10.42.0.5/24 dev vpod-ns "
        "&& ip netns exec pod ip link set vpod-ns up && ip netns exec pod ip link set lo up "
        "&& ip netns exec pod ip route add default via 10.42.0.1"
    )


def remove_pod_network(node: TestHost) -> None:
    """Remove what ``add_pod_network`` made."""
    node.exec("ip netns del pod; ip link del vpod 2>/dev/null; true")


@pytest.fixture(scope="module")
def vpn(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vpn]:
    workdir = tmp_path_factory.mktemp("wireguard")
    node = harness.start("vpn-node", networks=("public",))
    peer = harness.start("vpn-peer", networks=("public",))
    peer_key = generate_private_key()
    key_file = workdir / "admin.key"
    key_file.write_text(peer_key + "\n")
    key_file.chmod(0o600)
    peers = [{"name": "admin", "public_key": public_key_of(peer_key), "address": "10.8.0.2"}]
    hosts_file = harness.write_hosts_file(
        workdir / "hosts.json", [node], data={node.name: {"wireguard_peers": peers}}
    )
    harness.run_pyinfra(hosts_file, "deploys/baseline.py")
    harness.run_pyinfra(hosts_file, "deploys/wireguard.py")
    config_file = workdir / "admin.conf"
    written = socle_command(
        hosts_file, "wireguard", "client-config", "--inventory", "inventories/test.py",
        "--peer", "admin", "--private-key-file", str(key_file), "--output", str(config_file),
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    config = config_file.read_text()
    install_client_config(peer, config)
    server_key = node.ssh("sudo wg show wg0 public-key").stdout.strip()
    yield Vpn(node, peer, hosts_file, config, peers[0]["public_key"], server_key)
    harness.remove(peer)
    harness.remove(node)


def test_client_config_points_at_the_node_and_routes_the_cluster(vpn: Vpn) -> None:
    lines = vpn.client_config.splitlines()

    assert f"Endpoint = {vpn.node.address}:51820" in lines
    assert "AllowedIPs = 10.8.0.0/24, 10.42.0.0/16, 10.43.0.0/16" in lines
    assert f"PublicKey = {vpn.server_public_key}" in lines
    assert "Address = 10.8.0.2/32" in lines


def test_client_config_file_is_private(vpn: Vpn) -> None:
    config_file = vpn.hosts_file.parent / "admin.conf"

    assert config_file.stat().st_mode & 0o777 == 0o600


def test_peer_reaches_admin_ports_through_the_tunnel_only(vpn: Vpn) -> None:
    start_listener(vpn.node, [5432, 6443])
    try:
        wait_until(
            lambda: tcp_answers(vpn.peer, SERVER_VPN_ADDRESS, 5432), "the tunnel to 5432"
        )
        through_tunnel = tcp_answers(vpn.peer, SERVER_VPN_ADDRESS, 6443)
        public = {port: tcp_answers(vpn.peer, vpn.node.address, port) for port in (5432, 6443)}
    finally:
        stop_listener(vpn.node)

    assert through_tunnel
    assert public == {5432: False, 6443: False}


def test_handshake_is_recorded_on_both_sides(vpn: Vpn) -> None:
    wait_until(lambda: tcp_answers(vpn.peer, SERVER_VPN_ADDRESS, 22), "ssh over the tunnel")

    on_node = vpn.node.ssh("sudo wg show wg0 latest-handshakes").stdout.split()
    on_peer = vpn.peer.exec("wg show wg0 latest-handshakes").stdout.split()

    assert on_node[0] == vpn.peer_public_key and int(on_node[1]) > 0
    assert on_peer[0] == vpn.server_public_key and int(on_peer[1]) > 0


def test_wireguard_fact_reads_the_live_peer(harness: Harness, vpn: Vpn) -> None:
    wait_until(lambda: tcp_answers(vpn.peer, SERVER_VPN_ADDRESS, 22), "ssh over the tunnel")

    proc = harness.run_pyinfra(
        vpn.hosts_file, "fact", "facts.wireguard_state.WireguardInterface", "interface=wg0"
    )

    output = proc.stdout + proc.stderr
    assert vpn.peer_public_key in output and '"latest_handshake": 0' not in output
    assert '"running_public_key": "' + vpn.server_public_key + '"' in output


def test_forwarded_traffic_from_the_vpn_reaches_the_pod_range(vpn: Vpn) -> None:
    add_pod_network(vpn.node)
    start_listener(vpn.node, [8080], netns="pod")
    try:
        wait_until(lambda: tcp_answers(vpn.peer, POD_ADDRESS, 8080), "a pod through the VPN")
        # The same pod is not reachable for a host outside the VPN: the node is no router
        # for the public side.
        vpn.peer.exec(f"ip route add 10.42.0.0/24 via {vpn.node.address} table 100")
        vpn.peer.exec(f"ip rule add to {POD_ADDRESS} iif lo table 100 priority 10")
        try:
            public_side = tcp_answers(vpn.peer, POD_ADDRESS, 8080)
        finally:
            vpn.peer.exec(f"ip rule del to {POD_ADDRESS} iif lo table 100 priority 10")
            vpn.peer.exec("ip route flush table 100")
    finally:
        stop_listener(vpn.node, netns="pod")
        remove_pod_network(vpn.node)

    assert not public_side


def test_second_runs_change_nothing(harness: Harness, vpn: Vpn) -> None:
    for deploy in ("deploys/baseline.py", "deploys/wireguard.py"):
        run = harness.run_pyinfra(vpn.hosts_file, deploy, "--json")
        assert changed_operations(run.stdout) == [], deploy


def test_server_key_is_generated_once_and_kept(harness: Harness, vpn: Vpn) -> None:
    harness.run_pyinfra(vpn.hosts_file, "deploys/wireguard.py")

    assert vpn.node.ssh("sudo wg show wg0 public-key").stdout.strip() == vpn.server_public_key
    mode = vpn.node.ssh("sudo stat -c '%a %U' /etc/wireguard/wg0.key").stdout.strip()
    assert mode == "600 root"


def test_vpn_and_firewall_come_back_after_a_reboot(harness: Harness, vpn: Vpn) -> None:
    vpn.node.restart()

    assert vpn.node.ssh("systemctl is-active wg-quick@wg0").stdout.strip() == "active"
    assert vpn.node.ssh("sudo ufw status").stdout.startswith("Status: active")
    assert vpn.node.ssh("sudo wg show wg0 public-key").stdout.strip() == vpn.server_public_key
    start_listener(vpn.node, [5432, 6443])
    try:
        wait_until(
            lambda: tcp_answers(vpn.peer, SERVER_VPN_ADDRESS, 5432), "the tunnel after reboot"
        )
        public = {port: tcp_answers(vpn.peer, vpn.node.address, port) for port in (5432, 6443)}
    finally:
        stop_listener(vpn.node)
    assert public == {5432: False, 6443: False}
    for deploy in ("deploys/baseline.py", "deploys/wireguard.py"):
        run = harness.run_pyinfra(vpn.hosts_file, deploy, "--json")
        assert changed_operations(run.stdout) == [], deploy


# The server key from SOPS, on a host that runs phase 2 on its own.


@pytest.fixture
def sops_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    private = generate_private_key()
    sops_file, identity_file = write_sops_file(tmp_path, {"wireguard_private_key": private})
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(identity_file))
    return sops_file, private


def test_server_key_from_sops_is_installed_and_never_shown(
    harness: Harness, sops_key: tuple[Path, str], tmp_path: Path
) -> None:
    sops_file, private = sops_key
    node = harness.start("sops-node", networks=("public",))
    try:
        hosts_file = harness.write_hosts_file(
            tmp_path / "hosts.json",
            [node],
            data={node.name: {"wireguard_private_key_sops": str(sops_file)}},
        )
        runs = [
            harness.run_pyinfra(hosts_file, "deploys/wireguard.py", "--dry", "--diff", "-v"),
            harness.run_pyinfra(hosts_file, "deploys/wireguard.py", "--diff", "-vv"),
            harness.run_pyinfra(hosts_file, "deploys/wireguard.py", "--json"),
        ]

        for run in runs:
            assert private not in run.stdout + run.stderr
        assert changed_operations(runs[2].stdout) == []
        live = node.ssh("sudo wg show wg0 public-key").stdout.strip()
        assert live == public_key_of(private)
        assert node.ssh("sudo stat -c '%a %U' /etc/wireguard/wg0.key").stdout.strip() == (
            "600 root"
        )
        config = node.ssh("sudo cat /etc/wireguard/wg0.conf").stdout
        assert private not in config
    finally:
        harness.remove(node)
