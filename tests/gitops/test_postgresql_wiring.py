"""PostgreSQL in the cluster is where the node agent looks for it.

The agent's cluster discovery (socle_agent.sources.postgres.connection_from_cluster)
reads a Service's cluster IP and the port (by name, when its config names one) and a
Secret's password (and user) keys, as configured in agent_settings.postgres.kubernetes.
This test reads both sides: the production agent settings with the agent's own parser
defaults, and the rendered Service, StatefulSet and the Secret the deploy makes, and
runs the agent's discovery against them.
"""

from __future__ import annotations

import base64
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

from socle_agent.base import JobContext
from socle_agent.config import KubernetesConnection, parse_config
from socle_agent.postgres.connection import connection_from_cluster

from socle import cluster_manifests
from tests.gitops.conftest import prod_data
from tests.gitops.render import Platform


def agent_kubernetes_settings() -> KubernetesConnection:
    """agent_settings.postgres.kubernetes of production, with the agent's defaults."""
    settings = dict(prod_data()["agent_settings"]["postgres"]["kubernetes"])
    known = {f.name for f in fields(KubernetesConnection)}
    return KubernetesConnection(
        **{k: v for k, v in settings.items() if k in known and k != "kubeconfig"}
    )


class ClusterAnswers:
    """The two reads the agent makes, answered from rendered objects (a CoreV1Api's shape)."""

    def __init__(self, service: dict[str, Any], secret: dict[str, Any]) -> None:
        self.service = service
        self.secret = secret

    def read_namespaced_service(self, name: str, namespace: str, **request: Any) -> Any:
        meta = self.service["metadata"]
        assert (name, namespace) == (meta["name"], meta["namespace"]), "agent asks another Service"
        ports = [
            SimpleNamespace(name=p.get("name"), port=p["port"])
            for p in self.service["spec"]["ports"]
        ]
        # the API server gives a ClusterIP Service an address
        return SimpleNamespace(spec=SimpleNamespace(cluster_ip="10.43.0.54", ports=ports))

    def read_namespaced_secret(self, name: str, namespace: str, **request: Any) -> Any:
        meta = self.secret["metadata"]
        assert (name, namespace) == (meta["name"], meta["namespace"]), "agent asks another Secret"
        # the API server turns stringData into base64 data
        data = {
            k: base64.b64encode(v.encode()).decode() for k, v in self.secret["stringData"].items()
        }
        return SimpleNamespace(data=data)


def test_service_secret_and_namespace_are_what_the_agent_reads(platform: Platform) -> None:
    kube = agent_kubernetes_settings()
    service = platform.find("Service", kube.service, kube.namespace)
    secret = cluster_manifests.postgresql_secret("s3cret")

    assert service["spec"]["type"] == "ClusterIP" and "clusterIP" not in service["spec"]
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"]) == (
        kube.secret,
        kube.namespace,
    )
    assert kube.password_key in secret["stringData"]
    assert kube.user_key is None or kube.user_key in secret["stringData"]
    if kube.port_name is not None:
        assert kube.port_name in [p["name"] for p in service["spec"]["ports"]]

    job = JobContext(parse_config({}, check_paths=False))
    connection = connection_from_cluster(job, kube, "postgres", ClusterAnswers(service, secret))

    assert (connection.host, connection.port, connection.password) == ("10.43.0.54", 5432, "s3cret")
    assert connection.user == secret["stringData"]["username"] == "postgres"


def test_the_statefulset_reads_the_same_secret_keys_and_serves_the_named_port(
    platform: Platform,
) -> None:
    kube = agent_kubernetes_settings()
    statefulset = platform.find("StatefulSet", "postgresql", kube.namespace)
    service = platform.find("Service", kube.service, kube.namespace)
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    refs = {
        env["name"]: (env["valueFrom"]["secretKeyRef"]["name"],
                      env["valueFrom"]["secretKeyRef"]["key"])
        for env in container["env"] if "valueFrom" in env
    }  # fmt: skip
    secret = cluster_manifests.postgresql_secret("x")

    assert refs == {
        "POSTGRES_USER": (kube.secret, "username"),
        "POSTGRES_PASSWORD": (kube.secret, kube.password_key),
    }
    assert set(secret["stringData"]) == {"username", "password"}
    [port] = container["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"] == "postgresql"
    assert (
        service["spec"]["selector"].items()
        <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_exporter_and_the_agents_role_name_the_same_objects(platform: Platform) -> None:
    kube = agent_kubernetes_settings()
    exporter = platform.find("Deployment", "postgres-exporter", kube.namespace)
    env = {e["name"]: e for e in exporter["spec"]["template"]["spec"]["containers"][0]["env"]}
    role = platform.find("Role", "socle-agent", kube.namespace)

    assert env["DATA_SOURCE_PASS"]["valueFrom"]["secretKeyRef"] == {
        "name": kube.secret,
        "key": "password",
    }
    assert env["DATA_SOURCE_URI"]["value"].startswith(f"{kube.service}.{kube.namespace}.svc")
    assert {r["resources"][0]: r["resourceNames"] for r in role["rules"]} == {
        "services": [kube.service],
        "secrets": [kube.secret],
    }


def test_admins_reach_postgresql_on_the_vpn_address_only(platform: Platform) -> None:
    vpn = platform.find("Service", "postgresql-vpn", "database")
    policy = platform.find("NetworkPolicy", "postgresql", "database")
    sources = policy["spec"]["ingress"][0]["from"]

    assert vpn["spec"]["type"] == "ClusterIP"
    assert vpn["spec"]["externalIPs"] == ["10.8.0.1"]
    assert [p["port"] for p in vpn["spec"]["ports"]] == [5432]
    assert {"ipBlock": {"cidr": "10.8.0.0/24"}} in sources
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 5432, "protocol": "TCP"}]
