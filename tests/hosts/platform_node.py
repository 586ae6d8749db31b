"""A test host made into the whole platform's node: phases 1 to 7 with the stand-in k3s.

Phases 4 to 6 need what the stand-in k3s cannot make itself: the objects Helm and Argo CD
would render. They are rendered here with the real ``helm`` and the real pinned charts,
from the same values the deploys compute (tests/gitops/render.py, the renderer the render
tests validate), and placed on the node where the stand-in's controllers read them
(tests/standins/k3s_controllers.py). A deploy whose HelmChart or Application differs
from what was rendered finds its chart failed or its Application out of sync.

Example::

    data = platform_node_data(admin_public_key, postgres_password, sops_file,
                              standin_k3s_data(workdir))
    place_renderings(node, renderings(data))
    harness.run_pyinfra(hosts_file, "deploys/all.py")
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from socle import cluster_manifests
from socle.gitops_values import root_values
from socle.versions import load_versions
from tests.harness.hosts import REPO_ROOT, TestHost
from tests.hosts.admin import agent_node_data
from tests.hosts.k3s_node import put_files
from tests.standins.k3s_controllers import application_sources_sha256, helmchart_values_sha256

RENDERED = "/var/lib/rancher/k3s/standin/rendered"
TEST_GROUP_DATA = REPO_ROOT / "inventories" / "group_data" / "test.py"
# The keys of the SOPS file a platform node's secrets come from.
GRAFANA_KEY = "grafana_admin_password"
POSTGRESQL_KEY = "postgresql_password"


def platform_secrets(sops_file: Path) -> dict[str, Any]:
    """Phases 5 and 6's secrets from ``sops_file`` (keys ``GRAFANA_KEY`` and
    ``POSTGRESQL_KEY``), as host data."""
    return {
        "grafana_admin": {"user": "admin",
                          "password_sops": {"file": str(sops_file), "key": GRAFANA_KEY}},
        "postgresql_credentials": {
            "password_sops": {"file": str(sops_file), "key": POSTGRESQL_KEY}},
    }  # fmt: skip


def platform_node_data(
    admin_public_key: str, postgres_password: str, sops_file: Path, k3s: Mapping[str, str],
    **extra: Any,
) -> dict[str, Any]:
    """Host data of a node running every phase: one admin peer, the agent with the
    PostgreSQL stand-in, the stand-in k3s (``standin_k3s_data``), and phases 5 and 6's
    secrets from ``sops_file``."""
    return {**agent_node_data(admin_public_key, postgres_password, sops_file), **k3s,
            **platform_secrets(sops_file), **extra}  # fmt: skip


def merged_data(host_data: Mapping[str, Any]) -> dict[str, Any]:
    """The data a deploy sees on a test host: the test group's, then the host's."""
    group = {k: v for k, v in runpy.run_path(str(TEST_GROUP_DATA)).items()
             if not k.startswith("__")}  # fmt: skip
    return {**group, **host_data}


def renderings(host_data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What Helm and Argo CD would render for this node, by the stand-in's file names.

    ``helmchart-argocd``: the pinned argo-cd chart with gitops/argocd/values.yaml, as k3s's
    HelmChart installs it; ``application-<name>``: the root Application's objects (the
    child Applications) and each child's, as Argo CD's repo server renders them.
    """
    from tests.gitops.render import Renderer

    data = merged_data(host_data)
    versions = load_versions(Path(data["socle_versions_file"]))
    values = root_values(data, versions)
    renderer = Renderer(kube_version=versions.k3s.kubernetes_version)
    platform = renderer.platform(values)
    values_file = REPO_ROOT / cluster_manifests.ARGOCD_VALUES
    pin = versions.charts["argo-cd"]
    found: dict[str, dict[str, Any]] = {
        "helmchart-argocd": {
            "chart": "argo-cd",
            "version": pin.version,
            "values_sha256": helmchart_values_sha256(values_file.read_text()),
            "objects": renderer.helm_template(
                cluster_manifests.ARGOCD_RELEASE, renderer.chart_archive("argo-cd", pin.version),
                cluster_manifests.ARGOCD_NAMESPACE, [values_file],
            ),
        },
        f"application-{cluster_manifests.ROOT_APPLICATION}": {
            "sources_sha256": application_sources_sha256(
                cluster_manifests.root_application(values)
            ),
            "objects": platform.root,
        },
    }  # fmt: skip
    for app in platform.root:
        if app["kind"] == "Application":
            name = app["metadata"]["name"]
            found[f"application-{name}"] = {
                "sources_sha256": application_sources_sha256(app),
                "objects": platform.applications[name],
            }
    return found


def place_renderings(node: TestHost, rendered: Mapping[str, Mapping[str, Any]]) -> None:
    """Put the renderings where the node's stand-in k3s reads them (root only)."""
    put_files(node, RENDERED, {f"{name}.json": json.dumps(content).encode()
                               for name, content in rendered.items()}, mode=0o600)  # fmt: skip
    node.exec(["chmod", "0700", RENDERED])
