"""What an admin does from their own machine: the `socle` command, a WireGuard client."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from socle.wireguard_keys import generate_private_key, public_key_of
from tests.harness.hosts import REPO_ROOT, TestHost


def socle_command(hosts_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the operator's `socle` command from the repository, on the test inventory."""
    socle = Path(sys.executable).with_name("socle")
    env = {**os.environ, "SOCLE_TEST_HOSTS": str(hosts_file)}
    return subprocess.run(
        [str(socle), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def install_client_config(peer: TestHost, config: str) -> None:
    """Install ``config`` as the peer's wg0 and (re)start it, as an admin would."""
    encoded = base64.b64encode(config.encode()).decode()
    peer.exec(
        f"umask 077 && mkdir -p /etc/wireguard && echo {encoded} | base64 -d "
        "> /etc/wireguard/wg0.conf && systemctl restart wg-quick@wg0"
    )


def new_admin_key(folder: Path, name: str = "admin") -> tuple[Path, str]:
    """Make an admin's WireGuard key pair: the private key file (0600) and the public key."""
    private = generate_private_key()
    key_file = folder / f"{name}.key"
    key_file.write_text(private + "\n")
    key_file.chmod(0o600)
    return key_file, public_key_of(private)


def connect_admin(hosts_file: Path, peer: TestHost, key_file: Path, name: str = "admin") -> str:
    """Write the admin's client config with `socle wireguard client-config`, install it on
    ``peer`` and return it."""
    config_file = key_file.with_suffix(".conf")
    written = socle_command(
        hosts_file, "wireguard", "client-config", "--inventory", "inventories/test.py",
        "--peer", name, "--private-key-file", str(key_file), "--output", str(config_file),
    )  # fmt: skip
    if written.returncode != 0:
        raise AssertionError(f"socle wireguard client-config failed: {written.stderr}")
    config = config_file.read_text()
    install_client_config(peer, config)
    return config


def agent_node_data(
    admin_public_key: str, postgres_password: str, sops_file: Path
) -> dict[str, object]:
    """Host data for a node running phases 1, 2 and 7: one admin peer, the PostgreSQL
    stand-in's password, and the agent's password file from ``sops_file``."""
    return {
        "wireguard_peers": [
            {"name": "admin", "public_key": admin_public_key, "address": "10.8.0.2"}
        ],
        "standin_postgres_password": postgres_password,
        "agent_secrets": [
            {"path": "/etc/socle/postgres-password", "sops_file": str(sops_file),
             "key": "postgres_password"},
        ],
    }  # fmt: skip
