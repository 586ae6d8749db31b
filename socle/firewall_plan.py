"""The UFW rules the inventory asks for, shared by every deploy that touches the firewall.

Phases 1, 2 and 3 each apply the whole set, so running one after the other (in any
order) never removes another's rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from socle.inventory_checks import (
    DEFAULT_INTERFACE,
    DEFAULT_PUBLIC_TCP,
    DEFAULT_WIREGUARD_PORT,
    cluster_ranges,
    vpn_interface,
)
from socle.ufw_rules import UfwRule

DEFAULT_AGENT_METRICS_PORT = 9464
# The bridge k3s's flannel puts pods on: the cluster's Prometheus reaches the node from it.
CLUSTER_BRIDGE = "cni0"


def firewall_rules(data: Mapping[str, Any]) -> list[UfwRule]:
    """Return the rules for the inventory data of one host (checked beforehand).

    Public: each ``ufw_public_tcp`` port and ``wireguard_port``/udp. On the VPN
    interface only: each ``wireguard_admin_tcp_ports`` port. Forwarded from the VPN
    interface: ``cluster_pod_cidr`` and ``cluster_service_cidr``. From the cluster's pod
    and service ranges (the rules k3s documents for UFW hosts, so pods reach the node's
    API and DNS): anything; those sources are never public addresses.
    """
    interface = data.get("wireguard_interface", DEFAULT_INTERFACE)
    public = data.get("ufw_public_tcp", DEFAULT_PUBLIC_TCP)
    rules = [UfwRule(port=port, proto="tcp") for port in public]
    rules.append(UfwRule(port=data.get("wireguard_port", DEFAULT_WIREGUARD_PORT), proto="udp"))
    rules += [
        UfwRule(port=port, proto="tcp", interface=interface)
        for port in data.get("wireguard_admin_tcp_ports", [])
    ]
    ranges = cluster_ranges(data)
    rules += [
        UfwRule(route=True, interface=interface, to=str(ranges[key]))
        for key in ("cluster_pod_cidr", "cluster_service_cidr")
    ]
    rules += [
        UfwRule(source=str(ranges[key])) for key in ("cluster_pod_cidr", "cluster_service_cidr")
    ]
    metrics = data.get("agent_settings", {}).get("metrics")
    if metrics:
        rules.append(
            UfwRule(
                port=metrics.get("port", DEFAULT_AGENT_METRICS_PORT),
                proto="tcp",
                interface=CLUSTER_BRIDGE,
                source=str(ranges["cluster_pod_cidr"]),
                to=str(metrics.get("listen", vpn_interface(data).ip)),
            )
        )
    return rules
