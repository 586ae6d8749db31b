"""What in the cluster would be public, and what the allow-list lets through."""

from __future__ import annotations

from typing import Any

from socle.exposure import (
    DEFAULT_ALLOWED,
    SERVICELB_NAME_LABEL,
    SERVICELB_NAMESPACE_LABEL,
    Exposure,
    describe_refused,
    exposures_of,
    refused_exposures,
)


def service(name: str, namespace: str, kind: str, ports: list[dict[str, int]],
            **spec: Any) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": kind, "ports": ports, **spec}}


def pod(name: str, namespace: str, ports: list[dict[str, int]], labels: dict[str, str] | None
        = None, phase: str = "Running", **spec: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                        "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "ports": ports}], **spec},
            "status": {"phase": phase}}


TRAEFIK = service("traefik", "kube-system", "LoadBalancer", [{"port": 80}, {"port": 443}])
SVCLB = pod("svclb-traefik-1a2b3c4d-xyz12", "kube-system",
            [{"containerPort": 80, "hostPort": 80}, {"containerPort": 443, "hostPort": 443}],
            {SERVICELB_NAME_LABEL: "traefik", SERVICELB_NAMESPACE_LABEL: "kube-system"})


def test_traefik_and_its_servicelb_pods_are_allowed() -> None:
    exposures = exposures_of([TRAEFIK, SVCLB, service("db", "database", "ClusterIP",
                                                      [{"port": 5432}])])

    assert [e.how for e in exposures] == ["hostPort", "LoadBalancer"]
    assert refused_exposures(exposures, DEFAULT_ALLOWED) == []


def test_node_ports_host_ports_and_host_network_are_refused_and_named() -> None:
    objects = [
        TRAEFIK, SVCLB,
        service("leaky", "web", "NodePort", [{"port": 80, "nodePort": 30080}]),
        service("other-lb", "web", "LoadBalancer", [{"port": 8443}]),
        service("ext", "web", "ClusterIP", [{"port": 81}], externalIPs=["203.0.113.5"]),
        pod("hostport-pod", "apps", [{"containerPort": 8080, "hostPort": 8080}]),
        pod("on-host", "monitoring", [{"containerPort": 9100}], hostNetwork=True),
        pod("done", "apps", [{"containerPort": 1, "hostPort": 1}], phase="Succeeded"),
    ]  # fmt: skip

    refused = refused_exposures(exposures_of(objects))

    assert [e.describe() for e in refused] == [
        "Pod hostport-pod in namespace apps: hostPort 8080",
        "Pod on-host in namespace monitoring: hostNetwork 9100",
        "Service ext in namespace web: externalIPs 81 on 203.0.113.5",
        "Service leaky in namespace web: NodePort 30080",
        "Service other-lb in namespace web: LoadBalancer 8443",
    ]
    assert "Service leaky in namespace web" in describe_refused(refused)


def test_traefik_with_node_ports_or_more_ports_is_refused() -> None:
    with_node_ports = service("traefik", "kube-system", "LoadBalancer",
                              [{"port": 80, "nodePort": 31080}, {"port": 443}])
    more_ports = service("traefik", "kube-system", "LoadBalancer",
                         [{"port": 80}, {"port": 443}, {"port": 9000}])

    assert [e.how for e in refused_exposures(exposures_of([with_node_ports]))] == ["NodePort"]
    assert [e.how for e in refused_exposures(exposures_of([more_ports]))] == ["LoadBalancer"]


def test_a_pod_merely_labelled_like_servicelb_elsewhere_is_refused() -> None:
    impostor = pod("svclb-traefik-x", "apps", [{"containerPort": 80, "hostPort": 80}],
                   {SERVICELB_NAME_LABEL: "traefik", SERVICELB_NAMESPACE_LABEL: "kube-system"})

    assert len(refused_exposures(exposures_of([impostor]))) == 1


def test_exposures_round_trip_as_plain_data() -> None:
    exposure = exposures_of([SVCLB])[0]

    assert Exposure.from_dict(exposure.as_dict()) == exposure


def test_external_ips_on_the_vpn_address_only_are_allowed() -> None:
    on_vpn = service("kps-grafana", "monitoring", "ClusterIP", [{"port": 3000}],
                     externalIPs=["10.8.0.1"])
    public = service("grafana-public", "monitoring", "ClusterIP", [{"port": 3000}],
                     externalIPs=["203.0.113.5"])
    both = service("postgresql-vpn", "database", "ClusterIP", [{"port": 5432}],
                   externalIPs=["10.8.0.1", "203.0.113.5"])
    exposures = exposures_of([on_vpn, public, both])

    refused = refused_exposures(exposures, DEFAULT_ALLOWED, vpn_address="10.8.0.1")

    assert [e.describe() for e in refused] == [
        "Service postgresql-vpn in namespace database: externalIPs 5432 on 10.8.0.1, 203.0.113.5",
        "Service grafana-public in namespace monitoring: externalIPs 3000 on 203.0.113.5",
    ]
    # without the VPN address every external IP is refused
    assert len(refused_exposures(exposures)) == 3
    assert all(Exposure.from_dict(e.as_dict()) == e for e in exposures)
