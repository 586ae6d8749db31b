"""The inventories' agent settings are valid agent configurations."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from socle.agent_settings import render_agent_config

GROUP_DATA = Path(__file__).resolve().parents[2] / "inventories" / "group_data"


@pytest.mark.parametrize("group", ["prod", "test"])
def test_agent_settings_of_each_group_are_a_valid_configuration(group: str) -> None:
    data = runpy.run_path(str(GROUP_DATA / f"{group}.py"))

    assert render_agent_config(data["agent_settings"]).startswith("# Managed by socle")


@pytest.mark.parametrize("group", ["prod", "test"])
def test_k3s_settings_of_each_group_are_valid(group: str) -> None:
    from socle.k3s_plan import agent_kubeconfig_path, k3s_settings

    data = runpy.run_path(str(GROUP_DATA / f"{group}.py"))

    settings = k3s_settings(data)
    assert settings.vpn_address == "10.8.0.1"
    assert [e.service for e in settings.exposure_allowed] == ["traefik"]
    assert agent_kubeconfig_path(data) == "/etc/socle/agent-kubeconfig"
