"""Stand-in for the Kubernetes API (CoreV1Api) in the agent's tests; never shipped.

No API server exists where the tests run. This object answers the two calls the agent
makes, with the `kubernetes` client's own model classes, and, like a Role limited by
resourceNames, refuses to read anything but the one Service and the one Secret.
"""

from __future__ import annotations

import base64

from kubernetes.client import (
    ApiException,
    V1ObjectMeta,
    V1Secret,
    V1Service,
    V1ServicePort,
    V1ServiceSpec,
)


class CoreV1ApiStandIn:
    """Answers read_namespaced_service and read_namespaced_secret for one namespace."""

    def __init__(self, namespace: str, services: dict[str, V1Service],
                 secrets: dict[str, V1Secret]) -> None:
        self.namespace = namespace
        self.services = services
        self.secrets = secrets
        self.calls: list[tuple[str, str, str]] = []

    def _get(self, kind: str, objects: dict, name: str, namespace: str) -> object:
        self.calls.append((kind, namespace, name))
        if namespace != self.namespace or name not in objects:
            raise ApiException(status=403, reason=f"Forbidden: {kind} {namespace}/{name}")
        return objects[name]

    def read_namespaced_service(self, name: str, namespace: str) -> V1Service:
        return self._get("service", self.services, name, namespace)  # type: ignore[return-value]

    def read_namespaced_secret(self, name: str, namespace: str) -> V1Secret:
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
