"""Lock-out guards: each bad inventory value is refused, naming its key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from socle.inventory_checks import (
    InventoryDataError,
    check_firewall,
    check_ssh_access,
    check_wireguard,
    deploy_user,
)

ALICE = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
BOB = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3x"

GOOD: dict[str, Any] = {
    "ssh_user": "ubuntu",
    "ssh_port": 22,
    "ufw_public_tcp": [22, 80, 443],
    "wireguard_port": 51820,
    "wireguard_interface": "wg0",
    "wireguard_address": "10.8.0.1/24",
    "wireguard_admin_tcp_ports": [6443, 5432, 9100],
    "wireguard_peers": [
        {"name": "alice", "public_key": ALICE, "address": "10.8.0.2"},
        {"name": "bob", "public_key": BOB, "address": "10.8.0.3"},
    ],
    "cluster_pod_cidr": "10.42.0.0/16",
    "cluster_service_cidr": "10.43.0.0/16",
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """Return GOOD with one value replaced; ``path`` like ``wireguard_peers.1.address``."""
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


def refused_key(check: Any, data: dict[str, Any]) -> str:
    with pytest.raises(InventoryDataError) as refusal:
        check(data)
    assert refusal.value.key in str(refusal.value)
    return refusal.value.key


def test_good_inventory_passes_every_check() -> None:
    check_firewall(GOOD)
    check_wireguard(GOOD)
    check_ssh_access(GOOD, "ubuntu", [KEY], "node")


def test_check_ssh_access_without_key_refuses_to_disable_passwords() -> None:
    with pytest.raises(InventoryDataError) as refusal:
        check_ssh_access(GOOD, "ubuntu", [], "node")

    assert refusal.value.key == "ssh_password_login"
    assert "'ubuntu'" in str(refusal.value) and "node" in str(refusal.value)


def test_check_ssh_access_without_key_allows_keeping_passwords() -> None:
    check_ssh_access(with_change("ssh_password_login", True), "ubuntu", [], "node")


def test_check_ssh_access_with_non_boolean_refuses() -> None:
    with pytest.raises(InventoryDataError, match="ssh_password_login"):
        check_ssh_access(with_change("ssh_password_login", "no"), "ubuntu", [KEY], "node")


def test_deploy_user_prefers_ssh_deploy_user() -> None:
    assert deploy_user(GOOD) == "ubuntu"
    assert deploy_user(with_change("ssh_deploy_user", "admin")) == "admin"


def test_deploy_user_missing_refuses() -> None:
    with pytest.raises(InventoryDataError, match="ssh_deploy_user"):
        deploy_user({})


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("ufw_public_tcp", [80, 443], "ufw_public_tcp"),
        ("ssh_port", 2222, "ufw_public_tcp"),
        ("ssh_port", 0, "ssh_port"),
        ("ufw_public_tcp", [22, "80"], "ufw_public_tcp[1]"),
        ("ufw_public_tcp", "22", "ufw_public_tcp"),
        ("wireguard_port", 70000, "wireguard_port"),
        ("wireguard_admin_tcp_ports", [6443, 443], "wireguard_admin_tcp_ports[1]"),
        ("wireguard_interface", "wg0 && reboot", "wireguard_interface"),
        ("cluster_pod_cidr", "10.8.0.0/16", "cluster_pod_cidr"),
    ],
)
def test_check_firewall_refuses(path: str, value: Any, key: str) -> None:
    assert refused_key(check_firewall, with_change(path, value)) == key


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("wireguard_address", "10.8.0.1", "wireguard_address"),
        ("wireguard_address", "10.8.0.0/24", "wireguard_address"),
        ("wireguard_address", "10.8.0.1/32", "wireguard_address"),
        ("wireguard_address", "10.8.0.300/24", "wireguard_address"),
        ("cluster_pod_cidr", "10.42.0.1/16", "cluster_pod_cidr"),
        ("cluster_pod_cidr", "10.8.0.0/23", "cluster_pod_cidr"),
        ("cluster_service_cidr", "10.42.128.0/17", "cluster_service_cidr"),
        ("cluster_service_cidr", "fd00::/64", "cluster_service_cidr"),
        ("wireguard_public_key", "abc", "wireguard_public_key"),
        ("wireguard_peers", {"alice": ALICE}, "wireguard_peers"),
        ("wireguard_peers.0", "alice", "wireguard_peers[0]"),
        ("wireguard_peers.0.public_key", ALICE[:-2] + "=", "wireguard_peers[0].public_key"),
        ("wireguard_peers.1.public_key", ALICE, "wireguard_peers[1].public_key"),
        ("wireguard_peers.1.public_key", "REPLACE_ME", "wireguard_peers[1].public_key"),
        ("wireguard_peers.1.address", "10.8.0.2", "wireguard_peers[1].address"),
        ("wireguard_peers.1.address", "10.8.0.1", "wireguard_peers[1].address"),
        ("wireguard_peers.1.address", "10.8.1.3", "wireguard_peers[1].address"),
        ("wireguard_peers.1.address", "10.8.0.255", "wireguard_peers[1].address"),
        ("wireguard_peers.1.address", "10.8.0.3/32", "wireguard_peers[1].address"),
        ("wireguard_peers.1.name", "alice", "wireguard_peers[1].name"),
        ("wireguard_peers.1.name", "bob smith", "wireguard_peers[1].name"),
    ],
)
def test_check_wireguard_refuses(path: str, value: Any, key: str) -> None:
    assert refused_key(check_wireguard, with_change(path, value)) == key


def test_check_wireguard_missing_peer_field_names_it() -> None:
    data = copy.deepcopy(GOOD)
    del data["wireguard_peers"][0]["address"]

    assert refused_key(check_wireguard, data) == "wireguard_peers[0].address"


def test_check_wireguard_missing_range_names_it() -> None:
    data = copy.deepcopy(GOOD)
    del data["cluster_service_cidr"]

    assert refused_key(check_wireguard, data) == "cluster_service_cidr"


def test_refusal_is_a_pyinfra_deploy_error() -> None:
    from pyinfra.api.exceptions import DeployError

    assert issubclass(InventoryDataError, DeployError)
