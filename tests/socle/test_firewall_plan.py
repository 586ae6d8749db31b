"""The firewall rules derived from inventory data."""

from __future__ import annotations

from socle.firewall_plan import firewall_rules


def test_firewall_rules_public_then_vpn_only_then_routed() -> None:
    data = {
        "ufw_public_tcp": [22, 80, 443],
        "wireguard_port": 51820,
        "wireguard_interface": "wg0",
        "wireguard_address": "10.8.0.1/24",
        "wireguard_admin_tcp_ports": [6443, 5432],
        "cluster_pod_cidr": "10.42.0.0/16",
        "cluster_service_cidr": "10.43.0.0/16",
    }

    assert [rule.command() for rule in firewall_rules(data)] == [
        "allow 22/tcp",
        "allow 80/tcp",
        "allow 443/tcp",
        "allow 51820/udp",
        "allow in on wg0 to any port 6443 proto tcp",
        "allow in on wg0 to any port 5432 proto tcp",
        "route allow in on wg0 to 10.42.0.0/16",
        "route allow in on wg0 to 10.43.0.0/16",
        "allow from 10.42.0.0/16",
        "allow from 10.43.0.0/16",
    ]


def test_the_clusters_prometheus_reaches_the_agents_metrics_from_the_pods_only() -> None:
    data = {
        "wireguard_interface": "wg0",
        "wireguard_address": "10.8.0.1/24",
        "cluster_pod_cidr": "10.42.0.0/16",
        "cluster_service_cidr": "10.43.0.0/16",
        "agent_settings": {"metrics": {"listen": "10.8.0.1", "port": 9464}},
    }

    rules = [rule.command() for rule in firewall_rules(data)]

    assert rules[-1] == "allow in on cni0 from 10.42.0.0/16 to 10.8.0.1 port 9464 proto tcp"
    assert "allow 9464/tcp" not in rules and "allow 9464" not in rules
