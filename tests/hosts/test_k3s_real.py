"""Phase 3 with the real pinned k3s, where the internet and a k3s-capable host are at hand.

Opt-in: it needs the k3s release host reachable from the test hosts and the pins of
versions.toml confirmed (`socle pins k3s`, `socle pins test-ingress`). Where either is
missing (as on the machines that run this suite) it is reported as skipped with the
reason, and tests/hosts/test_k3s.py proves the deploy with the stand-in k3s.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from socle.versions import UnconfirmedPin, load_versions
from tests.harness.hosts import Harness, TestHost, changed_operations
from tests.hosts.k3s_node import kubectl_json
from tests.hosts.probes import scan_tcp, wait_until

pytestmark = [pytest.mark.host, pytest.mark.internet]

TEST_HOST_NAME = "test-ingress.socle.invalid"


def _why_not_here() -> str | None:
    """Every reason the real k3s cannot be installed here, or None."""
    versions = load_versions()
    reasons = []
    release_host = urlsplit(versions.k3s.release_url).hostname or ""
    try:
        socket.create_connection((release_host, 443), timeout=5).close()
    except OSError as error:
        reasons.append(f"the k3s release host cannot be reached from here ({error})")
    try:
        versions.k3s.artefacts("amd64").require_binary()
        versions.images["test-ingress"].require_reference()
    except UnconfirmedPin as refusal:
        reasons.append(f"the real k3s needs confirmed pins ({refusal})")
    return "; ".join(reasons) or None


@dataclass
class RealNode:
    node: TestHost
    outsider: TestHost
    hosts_file: Path


@pytest.fixture(scope="module")
def real_k3s(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    reason = _why_not_here()
    if reason is not None:
        pytest.skip(reason)
    node = harness.start("k3s-real-node")
    outsider = harness.start("k3s-real-outsider")
    hosts_file = harness.write_hosts_file(
        tmp_path_factory.mktemp("k3s-real") / "hosts.json", [node],
        data={node.name: {"k3s_test_ingress": True, "k3s_ready_timeout": 600}},
    )
    for deploy in ("deploys/baseline.py", "deploys/wireguard.py"):
        harness.run_pyinfra(hosts_file, deploy)
    harness.run_pyinfra(hosts_file, "deploys/k3s.py", timeout=1800)
    yield RealNode(node, outsider, hosts_file)
    harness.remove(outsider)
    harness.remove(node)


def test_real_k3s_is_ready_with_the_pinned_version(real_k3s: RealNode) -> None:
    nodes = kubectl_json(real_k3s.node, "get", "nodes")["items"]

    assert [n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes] == [
        load_versions().k3s.version
    ]


def test_traefik_is_served_by_servicelb_without_node_ports(real_k3s: RealNode) -> None:
    traefik = kubectl_json(real_k3s.node, "get", "service", "traefik", "-n", "kube-system")

    assert traefik["spec"]["type"] == "LoadBalancer"
    assert sorted(p["port"] for p in traefik["spec"]["ports"]) == [80, 443]
    assert not [p for p in traefik["spec"]["ports"] if p.get("nodePort")]


def test_the_test_ingress_answers_on_port_80_of_the_public_address(real_k3s: RealNode) -> None:
    def answers() -> bool:
        done = real_k3s.outsider.exec(
            ["curl", "-s", "--max-time", "5", "-H", f"Host: {TEST_HOST_NAME}",
             f"http://{real_k3s.node.address}/"], check=False)
        return "socle test ingress" in done.stdout

    wait_until(answers, "the test ingress through Traefik", timeout=600)


def test_only_ssh_and_traefik_answer_from_outside(real_k3s: RealNode) -> None:
    assert scan_tcp(real_k3s.outsider, real_k3s.node.address) == [22, 80, 443]


def test_a_second_run_changes_nothing(harness: Harness, real_k3s: RealNode) -> None:
    second = harness.run_pyinfra(real_k3s.hosts_file, "deploys/k3s.py", "--json")

    assert changed_operations(second.stdout) == []
