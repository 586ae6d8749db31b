"""Client configurations planned from inventory data, and the real inventory files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.exceptions import InventoryError

from socle.inventory_checks import InventoryDataError
from socle.wireguard_keys import generate_private_key, public_key_of
from socle_cli.inventory import load_hosts
from socle_cli.wireguard_client import (
    ClientConfigError,
    plan_client_config,
    read_private_key,
    render_client_config,
)

REPO = Path(__file__).resolve().parents[2]
SERVER = "Dtb5lb8XI2ROXuAfbH6O0c4Ni6l3sW6wx/O2IVcnKQ8="
ALICE = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="

DATA: dict[str, Any] = {
    "ssh_hostname": "203.0.113.10",
    "wireguard_port": 51820,
    "wireguard_address": "10.8.0.1/24",
    "wireguard_peers": [{"name": "alice", "public_key": ALICE, "address": "10.8.0.2"}],
    "cluster_pod_cidr": "10.42.0.0/16",
    "cluster_service_cidr": "10.43.0.0/16",
}


def test_plan_client_config_routes_vpn_pod_and_service_ranges() -> None:
    config = plan_client_config(DATA, "alice", SERVER)

    assert config.address == "10.8.0.2/32"
    assert config.endpoint == "203.0.113.10:51820"
    assert config.allowed_ips == ("10.8.0.0/24", "10.42.0.0/16", "10.43.0.0/16")


def test_plan_client_config_prefers_the_endpoint_name() -> None:
    data = {**DATA, "wireguard_endpoint": "vpn.socle.test", "wireguard_port": 443}

    assert plan_client_config(data, "alice", SERVER).endpoint == "vpn.socle.test:443"


def test_plan_client_config_unknown_peer_lists_the_known_ones() -> None:
    with pytest.raises(ClientConfigError, match="'bob'.*known peers: alice"):
        plan_client_config(DATA, "bob", SERVER)


def test_plan_client_config_bad_data_names_the_key() -> None:
    data = copy.deepcopy(DATA)
    data["cluster_service_cidr"] = "10.8.0.0/16"

    with pytest.raises(InventoryDataError, match="cluster_service_cidr"):
        plan_client_config(data, "alice", SERVER)


def test_render_client_config_with_private_key() -> None:
    key = generate_private_key()

    text = render_client_config(plan_client_config(DATA, "alice", SERVER), key)

    assert text.splitlines() == [
        "# WireGuard client configuration of alice, written by socle.",
        "[Interface]",
        f"PrivateKey = {key}",
        "Address = 10.8.0.2/32",
        "",
        "[Peer]",
        f"PublicKey = {SERVER}",
        "Endpoint = 203.0.113.10:51820",
        "AllowedIPs = 10.8.0.0/24, 10.42.0.0/16, 10.43.0.0/16",
        "PersistentKeepalive = 25",
    ]


def test_render_client_config_without_private_key_leaves_a_note() -> None:
    text = render_client_config(plan_client_config(DATA, "alice", SERVER), None)

    assert "PrivateKey =" not in text.replace("# PrivateKey", "")
    assert "# PrivateKey = <the private key of alice" in text


def test_read_private_key_checks_it_against_the_inventory(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "alice.key"
    path.write_text(key + "\n")

    assert read_private_key(path, public_key_of(key)) == key
    with pytest.raises(ClientConfigError, match="but the inventory gives"):
        read_private_key(path, ALICE)


def test_read_private_key_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    path.write_text("hello\n")

    with pytest.raises(ClientConfigError, match="does not hold a WireGuard private key"):
        read_private_key(path, ALICE)


def test_prod_inventory_refuses_to_load_until_its_placeholders_are_filled_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(InventoryError, match=r"wireguard_peers\[0\]\.public_key: admin1's"):
        load_hosts(Path("inventories/prod.py"))
