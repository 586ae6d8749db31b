"""Kubernetes objects the deploys apply themselves, each marked with the digest of what was
applied so that a re-run compares digests instead of applying again.

- ``load_manifests(folder)``: the objects of a folder of YAML files (``gitops/agent/``);
- ``with_digests(objects)``: the objects with their ``socle/manifest-sha256`` annotation;
- ``ingress_check_objects(host, image)``: phase 3's test workload behind Traefik.

Example::

    objects = with_digests(load_manifests(Path("gitops/agent")))
    wanted = {object_ref(o): manifest_digest(o) for o in objects}
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

DIGEST_ANNOTATION = "socle/manifest-sha256"
# Kinds that live outside namespaces (the others need their namespace to exist first).
CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "StorageClass", "PersistentVolume", "IngressClass", "PriorityClass",
})  # fmt: skip
TEST_INGRESS_NAMESPACE = "socle-test-ingress"
TEST_INGRESS_NAME = "socle-test-ingress"
PART_OF = {"app.kubernetes.io/part-of": "socle"}
# What the test ingress answers (socle verify reads it through Traefik).
TEST_INGRESS_BODY = "socle test ingress"

ObjectRef = tuple[str, str, str]


class ManifestError(ValueError):
    """A manifest file cannot be read as Kubernetes objects."""


def load_manifests(folder: Path) -> list[dict[str, Any]]:
    """Every object in the ``*.yaml`` files of ``folder``, files in name order."""
    objects: list[dict[str, Any]] = []
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ManifestError(f"{folder} holds no .yaml manifest")
    for path in files:
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as error:
            raise ManifestError(f"{path}: {error}") from None
        for document in documents:
            if document is None:
                continue
            if not isinstance(document, dict) or not document.get("kind") or not (
                document.get("metadata") or {}
            ).get("name"):
                raise ManifestError(f"{path}: every document needs kind and metadata.name")
            objects.append(document)
    return objects


def object_ref(obj: Mapping[str, Any]) -> ObjectRef:
    """``(kind, namespace, name)``; the namespace is ``""`` for cluster-scoped kinds."""
    meta = obj["metadata"]
    namespace = "" if obj["kind"] in CLUSTER_SCOPED else meta.get("namespace", "default")
    return obj["kind"], namespace, meta["name"]


def manifest_digest(obj: Mapping[str, Any]) -> str:
    """The sha256 of an object's canonical JSON, its own digest annotation left out."""
    bare = copy.deepcopy(dict(obj))
    annotations = bare.get("metadata", {}).get("annotations", {})
    annotations.pop(DIGEST_ANNOTATION, None)
    if not annotations and "annotations" in bare.get("metadata", {}):
        del bare["metadata"]["annotations"]
    canonical = json.dumps(bare, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def with_digests(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``objects``, each annotated with its ``manifest_digest``."""
    marked = []
    for obj in objects:
        copied = copy.deepcopy(dict(obj))
        copied.setdefault("metadata", {}).setdefault("annotations", {})[DIGEST_ANNOTATION] = (
            manifest_digest(obj)
        )
        marked.append(copied)
    return marked


def namespace_object(name: str) -> dict[str, Any]:
    """A Namespace, labelled as socle's."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(PART_OF)}}


def missing_namespaces(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Namespaces the objects live in but do not define themselves, sorted.

    ``gitops/agent/`` grants its Role in the ``database`` namespace, which belongs to the
    PostgreSQL phase: the deploy creates it (empty) when absent, so the grant can exist
    before the database does.
    """
    objects = list(objects)
    defined = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    used = {object_ref(o)[1] for o in objects} - {""}
    return sorted(used - defined)


def ingress_check_objects(host: str, image: str) -> list[dict[str, Any]]:
    """Phase 3's proof workload: busybox's httpd answering ``socle test ingress`` for
    ``host`` on port 80 of the node, through Traefik. Locked down: non-root, read-only,
    no token, small requests and limits."""
    labels = {"app.kubernetes.io/name": TEST_INGRESS_NAME, **PART_OF}
    selector = {"app.kubernetes.io/name": TEST_INGRESS_NAME}
    meta = {"name": TEST_INGRESS_NAME, "namespace": TEST_INGRESS_NAMESPACE, "labels": labels}
    script = (
        f"mkdir -p /www && echo '{TEST_INGRESS_BODY}' > /www/index.html && "
        "exec httpd -f -p 8080 -h /www"
    )
    container = {
        "name": "httpd",
        "image": image,
        "command": ["sh", "-c", script],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "5m", "memory": "8Mi"},
                      "limits": {"cpu": "50m", "memory": "32Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "www", "mountPath": "/www"}],
    }
    return [
        namespace_object(TEST_INGRESS_NAMESPACE),
        {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                            "runAsGroup": 65534,
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [container],
                        "volumes": [{"name": "www", "emptyDir": {"sizeLimit": "1Mi"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": "ClusterIP", "selector": selector,
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": {
                "ingressClassName": "traefik",
                "rules": [{"host": host, "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": TEST_INGRESS_NAME,
                                            "port": {"name": "http"}}},
                }]}}],
            },
        },
    ]  # fmt: skip
