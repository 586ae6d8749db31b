"""The `socle` command line: `socle wireguard client-config` on an inventory file."""

from __future__ import annotations

from pathlib import Path

import pytest

from socle.wireguard_keys import generate_private_key, public_key_of
from socle_cli.main import main

SERVER = "Dtb5lb8XI2ROXuAfbH6O0c4Ni6l3sW6wx/O2IVcnKQ8="


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """An inventory with one VPN host whose server key is given, and alice's own key."""
    monkeypatch.chdir(tmp_path)
    alice_key = generate_private_key()
    (tmp_path / "inventories" / "group_data").mkdir(parents=True)
    (tmp_path / "inventories" / "site.py").write_text(
        'site = [("vps", {"ssh_hostname": "198.51.100.7"})]\n'
    )
    (tmp_path / "inventories" / "group_data" / "site.py").write_text(
        f'wireguard_public_key = "{SERVER}"\n'
        'wireguard_address = "10.8.0.1/24"\n'
        'wireguard_endpoint = "vpn.site.test"\n'
        "wireguard_peers = [\n"
        f'    {{"name": "alice", "public_key": "{public_key_of(alice_key)}", '
        '"address": "10.8.0.9"},\n'
        "]\n"
        'cluster_pod_cidr = "10.42.0.0/16"\n'
        'cluster_service_cidr = "10.43.0.0/16"\n'
    )
    key_file = tmp_path / "alice.key"
    key_file.write_text(alice_key + "\n")
    return Path("inventories/site.py"), alice_key


def test_client_config_written_to_a_private_file(
    inventory: tuple[Path, str], tmp_path: Path
) -> None:
    path, alice_key = inventory
    output = tmp_path / "alice.conf"

    code = main([
        "wireguard", "client-config", "--inventory", str(path), "--peer", "alice",
        "--private-key-file", str(tmp_path / "alice.key"), "--output", str(output),
    ])  # fmt: skip

    assert code == 0
    assert output.stat().st_mode & 0o777 == 0o600
    text = output.read_text()
    assert f"PrivateKey = {alice_key}" in text
    assert "Endpoint = vpn.site.test:51820" in text
    assert f"PublicKey = {SERVER}" in text
    assert "Address = 10.8.0.9/32" in text


def test_client_config_to_stdout_without_private_key(
    inventory: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, alice_key = inventory

    code = main(["wireguard", "client-config", "--inventory", str(path), "--peer", "alice"])

    out = capsys.readouterr().out
    assert code == 0
    assert alice_key not in out and "# PrivateKey = <the private key of alice" in out


def test_client_config_unknown_peer_fails_with_a_message(
    inventory: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = inventory

    code = main(["wireguard", "client-config", "--inventory", str(path), "--peer", "bob"])

    assert code == 1
    assert "no peer named 'bob'" in capsys.readouterr().err


def test_client_config_with_someone_elses_key_fails(
    inventory: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = inventory
    other = tmp_path / "other.key"
    other.write_text(generate_private_key() + "\n")

    code = main([
        "wireguard", "client-config", "--inventory", str(path), "--peer", "alice",
        "--private-key-file", str(other),
    ])  # fmt: skip

    assert code == 1
    assert "but the inventory gives" in capsys.readouterr().err


def test_client_config_missing_inventory_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["wireguard", "client-config", "--inventory", "nowhere.py", "--peer", "a"])

    assert code == 1
    assert "no inventory at nowhere.py" in capsys.readouterr().err
