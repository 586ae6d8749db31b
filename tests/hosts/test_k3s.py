"""Phase 3 proven on a test host, with the stand-in k3s (tests/standins/k3s.py).

k3s cannot run here: the stand-in plays the binary (built per version, its checksums
pinned in a versions file made by the test), the server under the unit (datastore,
token, TLS, kubeconfig, sd_notify) and kubectl. One node goes through the phase's life in
order: refusals on a fresh node, the first install from the pinned release URL (a test
HTTPS server), a no-op re-run, the admin's kubeconfig, the test ingress, the exposure
guard, upgrades (refused across minors, refused when the snapshot fails, done with the
provider's VPS snapshot (the OVH API stand-in) and a datastore snapshot), the rollback,
and a reboot.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from socle.exposure import SERVICELB_NAME_LABEL, SERVICELB_NAMESPACE_LABEL
from tests.harness.hosts import REPO_ROOT, Harness, TestHost, changed_operations
from tests.hosts.admin import connect_admin, new_admin_key, socle_command
from tests.hosts.k3s_node import (
    K3S,
    ReleaseServer,
    apply,
    config_map,
    k3s_node_data,
    kubectl,
    kubectl_json,
    place_objects,
    remove_objects,
)
from tests.hosts.probes import scan_tcp, tcp_answers, wait_until
from tests.sops_files import write_sops_file
from tests.standins.k3s_build import StandinRelease, make_release, write_versions_file
from tests.standins.ovh_api import OvhApiStandIn

OVH_ENDPOINT_HOOK = REPO_ROOT / "tests" / "standins" / "ovh_endpoint"

pytestmark = pytest.mark.host

V1, V2, V3 = "v1.33.2+k3s1", "v1.34.1+k3s1", "v1.35.0+k3s1"
PHASES_3_AND_7 = ("deploys/k3s.py", "deploys/agent.py")
VPS = "vps-1a2b3c4d.vps.ovh.net"
VPN_ADDRESS = "10.8.0.1"
# What a fresh k3s runs that opens the node's ports: Traefik's LoadBalancer Service and
# the ServiceLB pod that carries it (hostPort 80 and 443).
K3S_DEFAULTS = [
    {"apiVersion": "v1", "kind": "Service",
     "metadata": {"name": "traefik", "namespace": "kube-system"},
     "spec": {"type": "LoadBalancer", "ports": [{"name": "web", "port": 80},
                                               {"name": "websecure", "port": 443}]}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "svclb-traefik-2d3e4f5a-x7k2p", "namespace": "kube-system",
                  "labels": {SERVICELB_NAME_LABEL: "traefik",
                             SERVICELB_NAMESPACE_LABEL: "kube-system"}},
     "spec": {"containers": [{"name": "lb-tcp-80", "ports": [
         {"containerPort": 80, "hostPort": 80}, {"containerPort": 443, "hostPort": 443}]}]},
     "status": {"phase": "Running"}},
]  # fmt: skip


@dataclass
class K3sNode:
    harness: Harness
    node: TestHost
    admin: TestHost
    outsider: TestHost
    workdir: Path
    releases: dict[str, StandinRelease]
    server: ReleaseServer
    admin_public_key: str
    extra: dict[str, Any] = field(default_factory=dict)

    def hosts_file(self, version: str, airgap: bool = False, name: str = "hosts",
                   **data: Any) -> Path:
        """The inventory's hosts file with the node pinned to the stand-in ``version``,
        fetched from the release URL or, with ``airgap``, from its air-gap folder."""
        release = self.releases[version]
        versions = write_versions_file(self.workdir / f"{name}-versions.toml", release,
                                       release_url=self.server.url,
                                       binary_sha256=data.pop("binary_sha256", None))
        if airgap:
            data.setdefault("k3s_airgap_dir", str(release.airgap_dir))
        host_data = k3s_node_data(self.admin_public_key, versions, **{**self.extra, **data})
        return self.harness.write_hosts_file(self.workdir / f"{name}.json", [self.node],
                                             data={self.node.name: host_data})

    def deploy(self, hosts_file: Path, *args: str, deploy: str = "deploys/k3s.py",
               check: bool = True) -> Any:
        """Run ``pyinfra inventories/test.py DEPLOY ARGS`` on the node."""
        return self.harness.run_pyinfra(hosts_file, deploy, *args, check=check)


def node_files(node: TestHost) -> str:
    """What the deploy could have changed: every file of k3s's places, with its sha256
    (but the live datastore, which a running k3s writes), and the firewall's rules."""
    return node.exec(
        "find /usr/local/bin /usr/local/lib /etc/rancher /etc/systemd/system /var/lib/rancher "
        "/etc/sysctl.d /etc/modules-load.d /etc/socle -type f -not -path '*/server/db/*' "
        "-exec sha256sum {} + 2>/dev/null | sort; ufw show added", check=False,
    ).stdout


@pytest.fixture(scope="module")
def fresh(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sNode]:
    """A node with phases 1 and 2, an admin on the VPN, and the outsider serving the
    stand-in's releases over HTTPS (the node trusts its CA, as it trusts the real one's)."""
    workdir = tmp_path_factory.mktemp("k3s")
    node = harness.start("k3s-node")
    admin = harness.start("k3s-admin")
    outsider = harness.start("k3s-outsider")
    releases = {v: make_release(v, workdir / "releases") for v in (V1, V2, V3)}
    # A release whose files are not the pinned ones, at the pinned version's place.
    served = {V1: releases[V1], V2: releases[V2], f"tampered/{V1}": releases[V2]}
    server = ReleaseServer.start(outsider, served, workdir)
    server.trust_on(node)
    admin_key, admin_public_key = new_admin_key(workdir)
    k3s = K3sNode(harness, node, admin, outsider, workdir, releases, server, admin_public_key)
    hosts_file = k3s.hosts_file(V1)
    for deploy in ("deploys/baseline.py", "deploys/wireguard.py"):
        harness.run_pyinfra(hosts_file, deploy)
    connect_admin(hosts_file, admin, admin_key)
    yield k3s
    for host in (outsider, admin, node):
        harness.remove(host)


def test_an_unconfirmed_pin_is_refused_naming_the_command_that_fills_it(
    fresh: K3sNode,
) -> None:
    before = node_files(fresh.node)
    hosts_file = fresh.hosts_file(V1)
    data = json.loads(hosts_file.read_text())
    data["hosts"][0]["data"].pop("socle_versions_file")  # the repository's versions.toml
    hosts_file.write_text(json.dumps(data))

    refused = fresh.deploy(hosts_file, check=False)

    assert refused.returncode != 0
    assert "k3s.sha256.amd64.binary is unconfirmed" in refused.stderr + refused.stdout
    assert "socle pins k3s" in refused.stderr + refused.stdout
    assert node_files(fresh.node) == before


def test_airgap_files_not_matching_the_pin_are_refused_before_the_node_changes(
    fresh: K3sNode,
) -> None:
    before = node_files(fresh.node)
    wrong = fresh.releases[V2].airgap_dir
    hosts_file = fresh.hosts_file(V1, airgap=True, k3s_airgap_dir=str(wrong))

    refused = fresh.deploy(hosts_file, check=False)

    output = refused.stderr + refused.stdout
    assert refused.returncode != 0
    assert f"sha256 mismatch for the k3s {V1} binary {wrong}/k3s" in output
    assert fresh.releases[V1].binary_sha256 in output
    assert fresh.releases[V2].binary_sha256 in output
    assert node_files(fresh.node) == before


def test_a_download_not_matching_the_pin_is_refused_on_the_node_and_removed(
    fresh: K3sNode,
) -> None:
    before = node_files(fresh.node)
    hosts_file = fresh.hosts_file(V1)
    versions = Path(json.loads(hosts_file.read_text())["hosts"][0]["data"]["socle_versions_file"])
    versions.write_text(versions.read_text().replace(fresh.server.url,
                                                     f"{fresh.server.url}/tampered"))

    refused = fresh.deploy(hosts_file, check=False)

    output = refused.stderr + refused.stdout
    assert refused.returncode != 0
    assert f"sha256 mismatch for the k3s {V1} binary" in output
    assert f"the file is {fresh.releases[V2].binary_sha256}" in output
    assert node_files(fresh.node) == before
    assert fresh.node.exec("ls /usr/local/lib/socle", check=False).returncode != 0


@pytest.fixture(scope="module")
def installed(fresh: K3sNode) -> K3sNode:
    """Phases 3 and 7 deployed (k3s from the release URL, and the agent that snapshots its
    datastore); the whole platform's deploy is tests/hosts/test_platform.py's."""
    for deploy in PHASES_3_AND_7:
        fresh.deploy(fresh.hosts_file(V1), deploy=deploy)
    place_objects(fresh.node, "k3s-defaults", K3S_DEFAULTS)
    return fresh


def test_k3s_runs_under_its_unit_with_the_pinned_binary(installed: K3sNode) -> None:
    node = installed.node

    version = node.ssh(f"{K3S} --version").stdout.splitlines()[0]
    unit = node.ssh("systemctl show k3s -p Type -p Delegate -p KillMode -p ActiveState "
                    "-p UnitFileState").stdout.split()
    binary = node.exec(f"sha256sum < {K3S}").stdout.split()[0]
    nodes = kubectl_json(node, "get", "nodes")["items"]

    assert version == f"k3s version {V1} (stand-in)"
    assert binary == installed.releases[V1].binary_sha256
    assert sorted(unit) == ["ActiveState=active", "Delegate=yes", "KillMode=process",
                            "Type=notify", "UnitFileState=enabled"]
    assert [n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes] == [V1]


def test_configuration_datastore_and_secrets_are_root_only(installed: K3sNode) -> None:
    node = installed.node
    config = node.exec("cat /etc/rancher/k3s/config.yaml").stdout
    modes = node.exec(
        "stat -c '%n %a %U' /etc/rancher/k3s/config.yaml /etc/rancher/k3s/k3s.yaml "
        "/etc/socle/agent-kubeconfig /var/lib/rancher/k3s/server/token"
    ).stdout.splitlines()
    journal = node.exec(
        "python3 -c \"import sqlite3; c = sqlite3.connect("
        "'/var/lib/rancher/k3s/server/db/state.db'); "
        "print(c.execute('PRAGMA journal_mode').fetchone()[0]); "
        "print(c.execute('SELECT count(*) FROM kine').fetchone()[0])\""
    ).stdout.split()

    assert f"tls-san:\n  - {VPN_ADDRESS}\n" in config
    assert "flannel-backend: vxlan" in config and "secrets-encryption: true" in config
    assert node.exec("ls /var/lib/rancher/k3s/server/cred/encryption-config.json").returncode == 0
    assert all(line.endswith(" 600 root") for line in modes), modes
    assert journal[0] == "wal" and int(journal[1]) > 5
    unreadable = node.ssh("cat /etc/rancher/k3s/k3s.yaml /etc/socle/agent-kubeconfig",
                          check=False)
    assert unreadable.returncode != 0 and "Permission denied" in unreadable.stderr


def test_the_agents_kubeconfig_holds_its_service_account_token(installed: K3sNode) -> None:
    node = installed.node
    secret = kubectl_json(node, "get", "secret", "socle-agent-token", "-n", "socle-system")
    kubeconfig = json.loads(
        node.exec("grep -v '^#' /etc/socle/agent-kubeconfig").stdout
    )
    role = kubectl_json(node, "get", "role", "socle-agent", "-n", "database")

    token = base64.b64decode(secret["data"]["token"]).decode()
    assert kubeconfig["users"][0]["user"]["token"] == token
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert role["rules"][0]["resourceNames"] == ["postgresql"]


def test_firewall_lets_the_cluster_ranges_in_and_the_api_on_the_vpn_only(
    installed: K3sNode,
) -> None:
    rules = installed.node.exec("ufw show added").stdout

    assert "ufw allow from 10.42.0.0/16" in rules and "ufw allow from 10.43.0.0/16" in rules
    wait_until(lambda: tcp_answers(installed.admin, VPN_ADDRESS, 6443), "the API over the VPN")
    assert not tcp_answers(installed.outsider, installed.node.address, 6443)


def test_second_run_of_phases_3_and_7_changes_nothing(installed: K3sNode) -> None:
    for deploy in PHASES_3_AND_7:
        second = installed.deploy(installed.hosts_file(V1), "--json", deploy=deploy)

        assert changed_operations(second.stdout) == [], deploy


def test_socle_kubeconfig_writes_a_private_file_for_the_vpn_address(
    installed: K3sNode, tmp_path: Path
) -> None:
    node = installed.node
    hosts_file = installed.hosts_file(V1)
    scratch = "find /tmp /var/tmp /home /root -xdev -type f 2>/dev/null | sort"
    before = node.exec(scratch).stdout
    output = tmp_path / "kubeconfig"

    written = socle_command(hosts_file, "kubeconfig", "--inventory", "inventories/test.py",
                            "--output", str(output))

    assert written.returncode == 0, written.stderr
    config = yaml.safe_load(output.read_text())
    on_node = yaml.safe_load(node.exec("cat /etc/rancher/k3s/k3s.yaml").stdout)
    assert oct(output.stat().st_mode & 0o777) == "0o600"
    assert config["clusters"][0]["cluster"]["server"] == f"https://{VPN_ADDRESS}:6443"
    assert config["users"][0]["user"] == on_node["users"][0]["user"]
    assert config["current-context"] == f"socle-{node.name}"
    assert node.exec(scratch).stdout == before
    assert node.exec("stat -c %a /etc/rancher/k3s/k3s.yaml").stdout.strip() == "600"


def test_the_test_ingress_is_installed_then_removed(installed: K3sNode) -> None:
    node = installed.node
    host = "check.socle.invalid"

    on = installed.deploy(installed.hosts_file(V1, k3s_test_ingress=True,
                                               k3s_test_ingress_host=host), "--json")
    ingress = kubectl_json(node, "get", "ingress", "socle-test-ingress",
                           "-n", "socle-test-ingress")
    service = kubectl_json(node, "get", "service", "socle-test-ingress",
                           "-n", "socle-test-ingress")
    again = installed.deploy(installed.hosts_file(V1, k3s_test_ingress=True,
                                                  k3s_test_ingress_host=host), "--json")
    off = installed.deploy(installed.hosts_file(V1), "--json")
    gone = kubectl(node, "get", "namespace", "socle-test-ingress", check=False)

    assert changed_operations(on.stdout) == [f"Test ingress for {host}"]
    assert ingress["spec"]["rules"][0]["host"] == host
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert service["spec"]["type"] == "ClusterIP"
    assert changed_operations(again.stdout) == []
    assert changed_operations(off.stdout) == ["No test ingress"]
    assert gone.returncode != 0


def test_the_exposure_guard_refuses_a_node_port_and_a_host_port_naming_them(
    installed: K3sNode,
) -> None:
    node = installed.node
    place_objects(node, "leaks", [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "leaky-web", "namespace": "web"},
         "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "hostport-pod", "namespace": "apps"},
         "spec": {"containers": [{"name": "c", "ports": [
             {"containerPort": 8080, "hostPort": 8080}]}]},
         "status": {"phase": "Running"}},
    ])  # fmt: skip
    try:
        refused = installed.deploy(installed.hosts_file(V1), check=False)
    finally:
        remove_objects(node, "leaks")
    allowed = installed.deploy(installed.hosts_file(V1), "--json")

    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "Service leaky-web in namespace web: NodePort 30080" in output
    assert "Pod hostport-pod in namespace apps: hostPort 8080" in output
    assert "traefik" not in output.split("public by accident")[1]
    assert changed_operations(allowed.stdout) == []


def test_an_upgrade_across_two_minor_versions_is_refused(installed: K3sNode) -> None:
    node = installed.node
    before = node_files(node)

    refused = installed.deploy(installed.hosts_file(V3), check=False)

    assert refused.returncode != 0
    assert "one minor version at a time; pin a v1.34.x release first" in (
        refused.stdout + refused.stderr
    )
    assert node_files(node) == before


@pytest.fixture(scope="module")
def upgraded(installed: K3sNode) -> Iterator[dict[str, Any]]:
    """k3s upgraded from V1 to V2 (air-gap), with a marker object on each side of it, the
    inventory asking for the provider's snapshot of the VPS first (the OVH API stand-in)."""
    node = installed.node
    apply(node, config_map("before-upgrade"))
    with OvhApiStandIn(VPS) as api, pytest.MonkeyPatch.context() as environment:
        sops_file, key_file = write_sops_file(installed.workdir, {
            "ovh_application_key": api.application_key,
            "ovh_application_secret": api.application_secret,
            "ovh_consumer_key": api.consumer_key,
        })  # fmt: skip
        environment.setenv("SOPS_AGE_KEY_FILE", str(key_file))
        environment.setenv("SOCLE_TEST_OVH_ENDPOINT", api.endpoint)
        environment.setenv("PYTHONPATH", f"{OVH_ENDPOINT_HOOK}:{REPO_ROOT}")
        ovh_vps = {"service_name": VPS, "sops_file": str(sops_file),
                   "snapshot_before_upgrade": True, "timeout_seconds": 60}  # fmt: skip
        run = installed.deploy(installed.hosts_file(V2, airgap=True, ovh_vps=ovh_vps), "--json")
        vps_snapshot = dict(api.state.snapshot or {})
    apply(node, config_map("after-upgrade"))
    record = json.loads(node.exec("cat /usr/local/lib/socle/k3s/rollback.json").stdout)
    yield {"run": run, "record": record, "vps_snapshot": vps_snapshot}


def test_an_upgrade_snapshots_the_datastore_first_and_keeps_the_previous_binary(
    installed: K3sNode, upgraded: dict[str, Any]
) -> None:
    node = installed.node
    record = upgraded["record"]
    manifest = json.loads(node.exec(
        f"cat /var/backups/socle/k3s/{record['snapshot']}/manifest.json").stdout)
    drill = node.ssh(f"sudo socle-agent drill k3s --snapshot {record['snapshot']}", check=False)
    previous = node.exec("sha256sum < /usr/local/lib/socle/k3s/k3s.previous").stdout.split()[0]
    nodes = kubectl_json(node, "get", "nodes")["items"]

    changed = changed_operations(upgraded["run"].stdout)
    assert "k3s restarted on a new binary, images, configuration or unit" in changed
    # the provider's snapshot of the whole VPS came first, as the inventory asked
    assert upgraded["vps_snapshot"]["description"].startswith(f"before k3s {V2} (from {V1})")
    assert changed.index("The provider's snapshot of the VPS before the k3s upgrade") < (
        changed.index(f"k3s {V2} binary, sha256 checked before it replaces anything"))
    assert record["previous_version"] == V1 and record["upgraded_to"] == V2
    assert manifest["details"]["k3s_version"] == V1
    assert drill.returncode == 0, drill.stderr
    assert previous == installed.releases[V1].binary_sha256
    assert node.ssh(f"{K3S} --version").stdout.startswith(f"k3s version {V2}")
    assert [n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes] == [V2]


def test_an_upgrade_whose_snapshot_fails_is_refused_and_changes_nothing(
    installed: K3sNode, upgraded: dict[str, Any]
) -> None:
    node = installed.node
    # The backup disk full: the agent's disk guard refuses the snapshot.
    node.exec("mount -t tmpfs -o size=16k,mode=0700 tmpfs /var/backups/socle/k3s")
    try:
        before = node_files(node)
        refused = installed.deploy(installed.hosts_file(V3, airgap=True), check=False)
        after = node_files(node)
    finally:
        node.exec("umount /var/backups/socle/k3s")

    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "refusing to upgrade k3s: the datastore snapshot" in output
    assert f"The installed k3s {V2} was not replaced" in output
    assert after == before


def test_the_rollback_puts_back_the_previous_binary_and_the_snapshot(
    installed: K3sNode, upgraded: dict[str, Any]
) -> None:
    node = installed.node
    rollback = "deploys/k3s_rollback.py"
    still_v2 = installed.deploy(installed.hosts_file(V2, airgap=True), deploy=rollback,
                                check=False)

    rolled_back = installed.deploy(installed.hosts_file(V1), deploy=rollback)

    binary = node.exec(f"sha256sum < {K3S}").stdout.split()[0]
    names = {o["metadata"]["name"] for o in
             kubectl_json(node, "get", "configmaps", "-n", "default")["items"]}
    nodes = kubectl_json(node, "get", "nodes")["items"]
    assert still_v2.returncode != 0
    assert "put the versions file back to the pin from before the upgrade" in (
        still_v2.stdout + still_v2.stderr
    )
    assert f"k3s {V1} is back with the datastore of snapshot" in (
        rolled_back.stdout + rolled_back.stderr
    )
    assert binary == installed.releases[V1].binary_sha256
    assert "before-upgrade" in names and "after-upgrade" not in names
    assert [n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes] == [V1]
    assert node.exec("ls /usr/local/lib/socle/k3s/rollback.json", check=False).returncode != 0
    again = installed.deploy(installed.hosts_file(V1), "--json", deploy=rollback)
    deploy = installed.deploy(installed.hosts_file(V1), "--json")
    assert changed_operations(again.stdout) == []
    assert changed_operations(deploy.stdout) == []


def test_after_a_reboot_k3s_is_back_and_only_ssh_answers_from_outside(
    installed: K3sNode,
) -> None:
    node = installed.node
    rules = node.exec("ufw show added").stdout

    node.restart()

    wait_until(lambda: kubectl(node, "get", "nodes", check=False).returncode == 0,
               "k3s's API after the reboot")
    assert node.exec("systemctl is-active k3s").stdout.strip() == "active"
    assert kubectl_json(node, "get", "nodes")["items"][0]["status"]["conditions"][0][
        "status"] == "True"
    assert node.exec("ufw show added").stdout == rules
    assert node.exec("ufw status").stdout.startswith("Status: active")
    assert scan_tcp(installed.outsider, node.address) == [22]
