"""Stand-in for the Kubernetes API (CoreV1Api) in the agent's tests; never shipped.

No API server exists where the tests run. This object answers the two calls the agent
makes, with the `kubernetes` client's own model classes, and checks each call against a
Role the way RBAC would: by default the agent's own Role, `gitops/agent/role.yaml`, so
the tests read exactly the Service and the Secret that Role names. A call the Role does
not allow is refused with 403 Forbidden; an allowed one for an object that is not there
gets 404 Not Found.

Example:

    api = CoreV1ApiStandIn.under_agent_role(
        services={"postgresql": service("postgresql", "127.0.0.1", {"postgresql": 5432})},
        secrets={"postgresql-credentials": secret("postgresql-credentials", {"password": "pw"})},
    )
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import (
    ApiException,
    V1ObjectMeta,
    V1Secret,
    V1Service,
    V1ServicePort,
    V1ServiceSpec,
)

AGENT_ROLE = Path(__file__).resolve().parents[3] / "gitops" / "agent" / "role.yaml"


def load_role(path: Path = AGENT_ROLE) -> dict[str, Any]:
    """The Role manifest at `path`, parsed."""
    role: dict[str, Any] = yaml.safe_load(path.read_text())
    if role.get("kind") != "Role":
        raise ValueError(f"{path} holds a {role.get('kind')}, not a Role")
    return role


def role_grants(role: Mapping[str, Any], verb: str = "get") -> set[tuple[str, str, str]]:
    """(namespace, resource, name) triples of the core API that `role` allows `verb` on.

    Only rules that name their objects count: a rule without resourceNames would allow
    every object of its kind, which the agent's Role must never do.
    """
    namespace = role["metadata"]["namespace"]
    grants = set()
    for rule in role.get("rules", []):
        if "" not in rule.get("apiGroups", []) or verb not in rule.get("verbs", []):
            continue
        for resource in rule.get("resources", []):
            for name in rule.get("resourceNames", []):
                grants.add((namespace, resource, name))
    return grants


class CoreV1ApiStandIn:
    """Answers read_namespaced_service and read_namespaced_secret, as far as `grants` allow.

    The objects live in `namespace`; `grants` is what the caller may `get` (see
    `role_grants`).
    """

    def __init__(self, namespace: str, services: dict[str, V1Service],
                 secrets: dict[str, V1Secret], grants: set[tuple[str, str, str]]) -> None:
        self.namespace = namespace
        self.services = services
        self.secrets = secrets
        self.grants = grants
        self.calls: list[tuple[str, str, str]] = []
        self.timeouts: list[object] = []

    @classmethod
    def under_agent_role(cls, services: dict[str, V1Service], secrets: dict[str, V1Secret],
                         role_path: Path = AGENT_ROLE) -> CoreV1ApiStandIn:
        """A cluster whose objects are in the Role's namespace, read as the Role allows."""
        role = load_role(role_path)
        return cls(role["metadata"]["namespace"], services, secrets, role_grants(role))

    def _get(self, kind: str, objects: dict[str, Any], name: str, namespace: str) -> object:
        self.calls.append((kind, namespace, name))
        if (namespace, f"{kind}s", name) not in self.grants:
            raise ApiException(status=403, reason=f"Forbidden: get {kind} {namespace}/{name}")
        if namespace != self.namespace or name not in objects:
            raise ApiException(status=404, reason=f"Not Found: {kind} {namespace}/{name}")
        return objects[name]

    def read_namespaced_service(self, name: str, namespace: str,
                                _request_timeout: object = None) -> V1Service:
        self.timeouts.append(_request_timeout)
        return self._get("service", self.services, name, namespace)  # type: ignore[return-value]

    def read_namespaced_secret(self, name: str, namespace: str,
                               _request_timeout: object = None) -> V1Secret:
        self.timeouts.append(_request_timeout)
        return self._get("secret", self.secrets, name, namespace)  # type: ignore[return-value]


def service(name: str, cluster_ip: str | None, ports: dict[str, int]) -> V1Service:
    """A ClusterIP Service with named ports."""
    return V1Service(
        metadata=V1ObjectMeta(name=name),
        spec=V1ServiceSpec(
            cluster_ip=cluster_ip,
            ports=[V1ServicePort(name=n, port=p) for n, p in ports.items()],
        ),
    )


def secret(name: str, values: dict[str, str]) -> V1Secret:
    """An Opaque Secret; values are base64-encoded as the API returns them."""
    data: dict[str, bytes | str] = {
        k: base64.b64encode(v.encode()).decode() for k, v in values.items()
    }
    return V1Secret(metadata=V1ObjectMeta(name=name), data=data, type="Opaque")
