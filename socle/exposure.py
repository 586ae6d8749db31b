"""Nothing public by accident: what in the cluster opens a port on the node, and what of
that is allowed.

ServiceLB and kube-proxy write iptables rules that UFW never sees, so a Service of type
LoadBalancer or NodePort, a Service with ``externalIPs``, a pod with a ``hostPort`` or on
the host's network answers on the public address whatever the firewall says. Only
Traefik's 80 and 443 (its LoadBalancer Service and the ServiceLB pods that carry it) may.

One exception is not public: ``externalIPs`` that are all the node's VPN address. The
admin surfaces (Grafana, Prometheus, Alertmanager, PostgreSQL) answer there besides their
ClusterIP; kube-proxy only catches traffic addressed to that address, which the public
side cannot route to the node. External IPs on any other address are refused.

The check is a pure function over the cluster's Services and Pods as the API returns
them (``kubectl get services,pods -A -o json``), so the deploy and ``socle verify`` use
the same one::

    exposures = exposures_of(listing["items"])
    refused = refused_exposures(exposures, DEFAULT_ALLOWED, vpn_address="10.8.0.1")
    if refused:
        raise SystemExit(describe_refused(refused))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The labels k3s's ServiceLB puts on the pods that carry a LoadBalancer Service.
SERVICELB_NAME_LABEL = "svccontroller.k3s.cattle.io/svcname"
SERVICELB_NAMESPACE_LABEL = "svccontroller.k3s.cattle.io/svcnamespace"
SERVICELB_NAMESPACE = "kube-system"
FINISHED_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class AllowedExposure:
    """A LoadBalancer Service allowed to be public on these ports, with its ServiceLB pods."""

    namespace: str
    service: str
    ports: tuple[int, ...]


DEFAULT_ALLOWED = (AllowedExposure("kube-system", "traefik", (80, 443)),)


@dataclass(frozen=True)
class Exposure:
    """One way an object opens ports on the node.

    + kind: ``Service`` or ``Pod``
    + how: ``LoadBalancer``, ``NodePort``, ``externalIPs``, ``hostPort`` or ``hostNetwork``
    + ports: the node's ports it opens (for ``hostNetwork``, the ports its containers declare)
    + carries: for a ServiceLB pod, the ``(namespace, name)`` of the Service it carries
    + addresses: for ``externalIPs``, the addresses it answers on
    """

    kind: str
    namespace: str
    name: str
    how: str
    ports: tuple[int, ...]
    carries: tuple[str, str] | None = None
    addresses: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line naming the object, its namespace and what it opens."""
        ports = ", ".join(map(str, self.ports)) or "no declared port"
        where = f" on {', '.join(self.addresses)}" if self.addresses else ""
        return f"{self.kind} {self.name} in namespace {self.namespace}: {self.how} {ports}{where}"

    def as_dict(self) -> dict[str, Any]:
        """The exposure as plain data (what the fact returns)."""
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name,
                "how": self.how, "ports": list(self.ports),
                "carries": list(self.carries) if self.carries else None,
                "addresses": list(self.addresses)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Exposure:
        """The inverse of ``as_dict``."""
        carries = data.get("carries")
        return cls(str(data["kind"]), str(data["namespace"]), str(data["name"]),
                   str(data["how"]), tuple(int(p) for p in data["ports"]),
                   (str(carries[0]), str(carries[1])) if carries else None,
                   tuple(str(a) for a in data.get("addresses") or ()))


def _service_exposures(service: Mapping[str, Any]) -> list[Exposure]:
    meta, spec = service.get("metadata", {}), service.get("spec", {}) or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "?")
    ports = spec.get("ports") or []
    found = []
    kind = spec.get("type", "ClusterIP")
    if kind == "LoadBalancer":
        found.append(Exposure("Service", namespace, name, "LoadBalancer",
                              tuple(sorted(int(p["port"]) for p in ports))))
    node_ports = tuple(sorted(int(p["nodePort"]) for p in ports if p.get("nodePort")))
    if kind in ("NodePort", "LoadBalancer") and (node_ports or kind == "NodePort"):
        found.append(Exposure("Service", namespace, name, "NodePort", node_ports))
    if spec.get("externalIPs"):
        found.append(Exposure("Service", namespace, name, "externalIPs",
                              tuple(sorted(int(p["port"]) for p in ports)),
                              addresses=tuple(sorted(str(a) for a in spec["externalIPs"]))))
    return found


def _pod_exposures(pod: Mapping[str, Any]) -> list[Exposure]:
    meta, spec = pod.get("metadata", {}), pod.get("spec", {}) or {}
    if (pod.get("status") or {}).get("phase") in FINISHED_PHASES:
        return []
    namespace, name = meta.get("namespace", "default"), meta.get("name", "?")
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    declared = [port for c in containers for port in (c.get("ports") or [])]
    labels = meta.get("labels") or {}
    carries = None
    if namespace == SERVICELB_NAMESPACE and labels.get(SERVICELB_NAME_LABEL):
        carries = (labels.get(SERVICELB_NAMESPACE_LABEL, ""), labels[SERVICELB_NAME_LABEL])
    found = []
    if spec.get("hostNetwork"):
        found.append(Exposure("Pod", namespace, name, "hostNetwork",
                              tuple(sorted({int(p["containerPort"]) for p in declared}))))
    host_ports = tuple(sorted({int(p["hostPort"]) for p in declared if p.get("hostPort")}))
    if host_ports and not spec.get("hostNetwork"):
        found.append(Exposure("Pod", namespace, name, "hostPort", host_ports, carries))
    return found


def exposures_of(objects: Iterable[Mapping[str, Any]]) -> list[Exposure]:
    """Every exposure among Services and Pods (other kinds are ignored), in a stable order."""
    found: list[Exposure] = []
    for obj in objects:
        if obj.get("kind") == "Service":
            found += _service_exposures(obj)
        elif obj.get("kind") == "Pod":
            found += _pod_exposures(obj)
    return sorted(found, key=lambda e: (e.kind, e.namespace, e.name, e.how))


def _allowed(
    exposure: Exposure, allowed: Iterable[AllowedExposure], vpn_address: str | None
) -> bool:
    if exposure.how == "externalIPs":
        return vpn_address is not None and set(exposure.addresses) == {vpn_address}
    for entry in allowed:
        within = set(exposure.ports) <= set(entry.ports)
        if (exposure.how == "LoadBalancer" and exposure.kind == "Service"
                and (exposure.namespace, exposure.name) == (entry.namespace, entry.service)):
            return within
        if (exposure.how == "hostPort" and exposure.carries == (entry.namespace, entry.service)
                and exposure.namespace == SERVICELB_NAMESPACE):
            return within
    return False


def refused_exposures(
    exposures: Iterable[Exposure],
    allowed: Iterable[AllowedExposure] = DEFAULT_ALLOWED,
    vpn_address: str | None = None,
) -> list[Exposure]:
    """The exposures the allow-list does not cover: node ports, other LoadBalancers,
    host ports and host networking beyond the allowed Services' own ports, and external
    IPs other than ``vpn_address`` (all of them when it is not given)."""
    entries = list(allowed)
    return [exposure for exposure in exposures if not _allowed(exposure, entries, vpn_address)]


def describe_refused(refused: Iterable[Exposure]) -> str:
    """The refusal message: each offending object, its namespace and what it opens."""
    lines = [f"  - {exposure.describe()}" for exposure in refused]
    return (
        "public by accident: these open ports on the node's public address, past UFW "
        "(ServiceLB and kube-proxy rules bypass it); make them ClusterIP and reach them over "
        "the VPN (external IPs on the VPN address only), or add them to "
        "k3s_exposure_allowed:\n" + "\n".join(lines)
    )
