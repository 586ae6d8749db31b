"""The Kubernetes objects the phase 4 to 6 deploys write, as plain data.

- k3s auto-deploy manifests (files in ``/var/lib/rancher/k3s/server/manifests``, which
  k3s applies at start and whenever they change): the HelmChart that bootstraps Argo CD
  and the root Application (app of apps), the namespaces the Secrets go into;
- Secrets made from SOPS on the operator's machine: they reach the node only through
  root-only files and are applied from there, never written into git or a manifest
  folder.

Argo CD bootstraps through k3s's HelmChart, then manages itself through the Application
``argocd`` (gitops/root). The two never own the release at the same time: once Argo CD
runs, the deploy marks the HelmChart unmanaged (helm-controller then leaves it, and
deleting it later uninstalls nothing) and removes the Helm release's records, and only
then creates the root Application, whose child ``argocd`` adopts the objects.

Example::

    chart = argocd_helmchart(load_versions(), values_text, handed_over=False)
    text = manifest_text(chart)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from socle.versions import Versions

MANIFESTS_DIR = "/var/lib/rancher/k3s/server/manifests"
# The node's copies of the Secrets' manifests: root only, applied with `k3s kubectl apply`.
SECRETS_DIR = "/etc/socle/kube-secrets"
ARGOCD_NAMESPACE = "argocd"
ARGOCD_RELEASE = "argocd"
ARGOCD_VALUES = Path("gitops/argocd/values.yaml")
# helm-controller leaves a HelmChart carrying this annotation alone, deletion included.
UNMANAGED_ANNOTATION = "helmcharts.helm.cattle.io/unmanaged"
ROOT_APPLICATION = "socle-root"
LABELS = {"app.kubernetes.io/part-of": "socle"}


def manifest_text(*objects: Mapping[str, Any]) -> str:
    """The objects as one YAML stream, the way the deploys write them."""
    return "---\n".join(yaml.safe_dump(dict(obj), sort_keys=False) for obj in objects)


def argocd_helmchart(versions: Versions, values_text: str, handed_over: bool) -> dict[str, Any]:
    """k3s's HelmChart installing the pinned Argo CD chart (release ``argocd``).

    ``handed_over``: Argo CD manages itself; the HelmChart stays, unmanaged, so neither a
    restart of k3s nor its deletion touches the release.
    """
    pin = versions.charts["argo-cd"]
    annotations = {"socle/role": "bootstrap: Argo CD then manages itself (Application argocd)"}
    if handed_over:
        annotations[UNMANAGED_ANNOTATION] = "true"
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {
            "name": ARGOCD_RELEASE,
            "namespace": "kube-system",
            "labels": dict(LABELS),
            "annotations": annotations,
        },
        "spec": {
            "chart": "argo-cd",
            "repo": pin.repository,
            "version": pin.version,
            "targetNamespace": ARGOCD_NAMESPACE,
            "createNamespace": True,
            "failurePolicy": "abort",
            "valuesContent": values_text,
        },
    }


def root_application(values: Mapping[str, Any]) -> dict[str, Any]:
    """The app of apps: gitops/root rendered with ``values`` (socle.gitops_values)."""
    repo = values["repository"]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": ROOT_APPLICATION,
            "namespace": ARGOCD_NAMESPACE,
            "labels": dict(LABELS),
            # Deleting the root deletes its Applications and what they own.
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": repo["url"],
                "targetRevision": repo["revision"],
                "path": "gitops/root",
                "helm": {"releaseName": "root", "valuesObject": dict(values)},
            },
            "destination": {
                "server": "https://kubernetes.default.svc",
                "namespace": ARGOCD_NAMESPACE,
            },
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "retry": {
                    "limit": 10,
                    "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"},
                },
            },
        },
    }


def namespace(name: str) -> dict[str, Any]:
    """A Namespace, so Secrets can be made in it before Argo CD syncs its application."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(LABELS)},
    }


def secret(
    name: str,
    namespace_name: str,
    string_data: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
    secret_type: str = "Opaque",
) -> dict[str, Any]:
    """A Secret holding ``string_data`` (clear values: only ever sent as a secret file)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace_name,
            "labels": {**LABELS, **(labels or {})},
        },
        "type": secret_type,
        "stringData": dict(string_data),
    }


def repository_secret(url: str, credentials: Mapping[str, str]) -> dict[str, Any]:
    """Argo CD's credentials for the git repository (``username``/``password`` or
    ``sshPrivateKey``), recognised by its label."""
    return secret(
        "socle-repository",
        ARGOCD_NAMESPACE,
        {"type": "git", "url": url, **credentials},
        labels={"argocd.argoproj.io/secret-type": "repository"},
    )


def postgresql_secret(password: str) -> dict[str, Any]:
    """The Secret PostgreSQL, its exporter and the node agent read (database namespace)."""
    return secret(
        "postgresql-credentials", "database", {"username": "postgres", "password": password}
    )


def alertmanager_smtp_secret(password: str) -> dict[str, Any]:
    """The SMTP password Alertmanager reads from /etc/alertmanager/secrets/alertmanager-smtp/."""
    return secret("alertmanager-smtp", "monitoring", {"password": password})


def grafana_admin_secret(user: str, password: str) -> dict[str, Any]:
    """Grafana's admin login (keys the kube-prometheus-stack values name)."""
    return secret("grafana-admin", "monitoring", {"admin-user": user, "admin-password": password})
