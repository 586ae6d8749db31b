"""The root Application's values: from the inventory and versions.toml, checked first."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path
from typing import Any

import pytest

from socle.gitops_values import duration_seconds, root_values
from socle.inventory_checks import InventoryDataError
from socle.versions import UnconfirmedPin, load_versions
from tests.gitops.conftest import render_versions

PROD_DATA = Path(__file__).resolve().parents[2] / "inventories" / "group_data" / "prod.py"


@pytest.fixture
def data() -> dict[str, Any]:
    return copy.deepcopy(dict(runpy.run_path(str(PROD_DATA))))


def test_production_values_carry_the_pins_and_the_inventorys_addresses(
    data: dict[str, Any],
) -> None:
    values = root_values(data, render_versions())
    versions = load_versions()

    assert values["charts"]["kubePrometheusStack"] == {
        "repository": versions.charts["kube-prometheus-stack"].repository,
        "version": versions.charts["kube-prometheus-stack"].version,
    }
    assert values["postgresql"]["image"].startswith(
        f"{versions.postgresql.image}:{versions.postgresql.tag}@sha256:"
    )
    assert values["node"] == {"vpnAddress": "10.8.0.1", "vpnNetwork": "10.8.0.0/24"}
    assert values["agent"] == {"metricsTarget": "10.8.0.1:9464"}
    assert values["alerting"]["repeatInterval"] == "12h"
    assert duration_seconds(values["alerting"]["repeatInterval"]) >= 3600


def test_an_unconfirmed_image_digest_is_refused_naming_the_command(data: dict[str, Any]) -> None:
    versions = load_versions()
    if versions.postgresql.digest != "unconfirmed":
        pytest.skip("versions.toml holds a confirmed digest")

    with pytest.raises(UnconfirmedPin, match="socle pins"):
        root_values(data, versions)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("alerting", {"smarthost": "smtp.example.org"}, "alerting.smarthost"),
        (
            "alerting",
            {
                "smarthost": "a:25",
                "from": "x@example.org",
                "to": ["ops@example.org"],
                "heartbeat_url": "ftp://hb.example.org/p",
            },
            "alerting.heartbeat_url",
        ),
        (
            "alerting",
            {
                "smarthost": "a:25",
                "from": "x@example.org",
                "to": ["o'p@x.org"],
                "heartbeat_url": "https://hb/p",
            },
            "alerting.to[0]",
        ),
        (
            "alerting",
            {
                "smarthost": "a:25",
                "from": "x@example.org",
                "to": ["ops@example.org"],
                "heartbeat_url": "https://hb/p",
                "username": "u",
            },
            "alerting.password_sops",
        ),
        (
            "alerting",
            {
                "smarthost": "a:25",
                "from": "x@example.org",
                "to": ["ops@example.org"],
                "heartbeat_url": "https://hb/p",
                "repeat_interval": "1m",
                "group_interval": "5m",
            },
            "alerting.repeat_interval",
        ),
        ("gitops_repository", {"url": "file:///etc"}, "gitops_repository.url"),
        (
            "gitops_repository",
            {"url": "https://git.example.org/x.git", "revision": "HEAD"},
            "gitops_repository.revision",
        ),
        ("gitops_repository", {"url": "https://git.example.org/x y.git"}, "gitops_repository.url"),
    ],
)
def test_bad_inventory_data_is_refused_naming_the_key(
    data: dict[str, Any], key: str, value: Any, named: str
) -> None:
    data[key] = value

    with pytest.raises(InventoryDataError) as raised:
        root_values(data, render_versions())

    assert raised.value.key == named


def test_the_agent_must_be_scraped_on_the_vpn_address(data: dict[str, Any]) -> None:
    data["agent_settings"]["metrics"] = {"listen": "0.0.0.0", "port": 9464}

    with pytest.raises(InventoryDataError, match="not the node's VPN address"):
        root_values(data, render_versions())


def test_durations() -> None:
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("500ms") == 0.5
    with pytest.raises(ValueError):
        duration_seconds("1x")


def test_host_versions_reads_the_hosts_file_and_refuses_a_bad_one(tmp_path: Path) -> None:
    from socle.gitops_values import PinRefused, host_versions
    from socle.versions import VERSIONS_FILE

    staging = tmp_path / "staging.toml"
    pinned = VERSIONS_FILE.read_text()
    staging.write_text(pinned.replace('version = "10.1.1"', 'version = "10.1.2"'))

    assert host_versions({"socle_versions_file": str(staging)}).charts["argo-cd"].version == (
        "10.1.2"
    )
    with pytest.raises(PinRefused, match="missing.toml"):
        host_versions({"socle_versions_file": str(tmp_path / "missing.toml")})
