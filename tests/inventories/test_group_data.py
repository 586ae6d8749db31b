"""The inventories: valid agent settings, kernel settings that fit where they run."""

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


def test_test_hosts_set_only_per_network_namespace_kernel_settings() -> None:
    # Test hosts share the machine's kernel: a global setting there would change it.
    sysctls = runpy.run_path(str(GROUP_DATA / "test.py"))["sysctl_hardening"]
    per_namespace = ("net.ipv4.conf.", "net.ipv6.conf.", "net.ipv4.icmp_", "net.ipv4.tcp_")

    assert [key for key in sysctls if not key.startswith(per_namespace)] == []


def test_production_keeps_ip_forwarding_to_phase_2() -> None:
    # The VPN and k3s need forwarding: phase 1's hardening never turns it off.
    sysctls = runpy.run_path(str(GROUP_DATA / "prod.py"))["sysctl_hardening"]

    assert not any("forwarding" in key or key == "net.ipv4.ip_forward" for key in sysctls)


@pytest.mark.parametrize("group", ["prod", "test"])
def test_k3s_settings_of_each_group_are_valid(group: str) -> None:
    from socle.k3s_plan import agent_kubeconfig_path, k3s_settings

    data = runpy.run_path(str(GROUP_DATA / f"{group}.py"))

    settings = k3s_settings(data)
    assert settings.vpn_address == "10.8.0.1"
    assert [e.service for e in settings.exposure_allowed] == ["traefik"]
    assert agent_kubeconfig_path(data) == "/etc/socle/agent-kubeconfig"


def test_test_hosts_give_phases_4_to_6_their_settings() -> None:
    from socle.gitops_values import alerting, repository

    data = runpy.run_path(str(GROUP_DATA / "test.py"))

    assert repository(data)["url"].endswith(".invalid/ops/socle.git")
    assert alerting(data)["heartbeatUrl"].startswith("https://heartbeat.socle.invalid/")
