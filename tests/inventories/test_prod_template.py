"""The production inventory is a template that names what to fill in before connecting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api.exceptions import InventoryError

from socle.inventory_template import placeholders, refuse_placeholders

REPO = Path(__file__).resolve().parents[2]


def test_each_kind_of_placeholder_is_named_with_what_to_put_there() -> None:
    data = {
        "ssh_hostname": "PLACEHOLDER: the VPS's address",
        "peers": [{"public_key": "PLACEHOLDER"}],
        "endpoint": "203.0.113.10",
        "mail": {"to": ["ops@example.org"], "host": "smtp.example.net"},
        "kept": ["10.8.0.1/24", "ops@example.co.uk", "vpn.socle.dev"],
    }

    assert list(placeholders(data, "vps")) == [
        "vps.ssh_hostname: the VPS's address",
        "vps.peers[0].public_key: a real value",
        "vps.endpoint: 203.0.113.10 is a documentation address: the real one",
        "vps.mail.to[0]: ops@example.org is an example name: the real one",
        "vps.mail.host: smtp.example.net is an example name: the real one",
    ]


def test_a_filled_in_inventory_passes(tmp_path: Path) -> None:
    group_data = tmp_path / "prod.py"
    group_data.write_text('wireguard_address = "10.8.0.1/24"\nmail_to = ["ops@socle.dev"]\n')

    refuse_placeholders([("vps", {"ssh_hostname": "51.38.0.10"})], group_data)


def test_group_data_placeholders_are_named_by_file(tmp_path: Path) -> None:
    group_data = tmp_path / "prod.py"
    group_data.write_text('peer_key = "PLACEHOLDER: the public key of admin1"\n')

    with pytest.raises(InventoryError, match="group_data/prod.py: peer_key: the public key of"):
        refuse_placeholders([("vps", {})], group_data)


def test_a_fresh_clone_stops_before_any_connection_listing_every_placeholder() -> None:
    pyinfra = Path(sys.executable).with_name("pyinfra")
    result = subprocess.run(
        [str(pyinfra), "inventories/prod.py", "deploys/all.py", "-y"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr

    assert result.returncode != 0
    assert "fill in the inventory before deploying" in output
    assert "vps.ssh_hostname: the VPS's public IPv4 address" in output
    assert "agent_settings.mail.host" in output
    assert "Connecting" not in output and "banner" not in output.lower()
