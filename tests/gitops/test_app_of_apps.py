"""Commit, sync, state, as far as these machines go: what the root Application renders is
the set of applications in gitops/, and a change to one file of gitops/ changes exactly
the objects it should (Argo CD would apply that difference and nothing else).

What a real cluster adds (Argo CD syncing, Synced and Healthy) is the opt-in test in
test_real_cluster.py; an operator sees it live with `kubectl -n argocd get applications`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gitops.render import Platform, Renderer

REPO = Path(__file__).resolve().parents[2]
# Folders of gitops/ that are not applications: the root itself.
NOT_APPLICATIONS = {"root"}


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def by_key(platform: Platform) -> dict[tuple[str, str, str], str]:
    """Every object of the platform and a dump of it, to compare two renders."""
    return {key(obj): json.dumps(obj, sort_keys=True) for _, obj in platform.objects()}


def changed(before: Platform, after: Platform) -> set[tuple[str, str, str]]:
    old, new = by_key(before), by_key(after)
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


@pytest.fixture()
def copy_of_repo(tmp_path: Path) -> Iterator[Path]:
    """A copy of the repository's gitops/ to change, as a commit would."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "gitops", repo / "gitops")
    yield repo


def folders_of(app: dict[str, Any]) -> set[str]:
    """The gitops/ folders an Application syncs: its path, or its chart's values file."""
    folders = set()
    for source in app["spec"]["sources"]:
        if "path" in source:
            folders.add(Path(source["path"]).name)
        for file in source.get("helm", {}).get("valueFiles", []):
            folders.add(Path(file.removeprefix("$values/")).parent.name)
    return folders


def test_root_renders_one_application_per_folder_of_gitops(platform: Platform) -> None:
    folders = {
        path.name for path in (REPO / "gitops").iterdir()
        if path.is_dir() and path.name not in NOT_APPLICATIONS
    }  # fmt: skip
    applications = [obj for obj in platform.root if obj["kind"] == "Application"]

    synced = [folders_of(app) for app in applications]
    assert all(len(names) == 1 for names in synced), synced
    assert sorted(name for names in synced for name in names) == sorted(folders)


def test_every_application_syncs_by_itself_prunes_and_heals(platform: Platform) -> None:
    for app in (obj for obj in platform.root if obj["kind"] == "Application"):
        policy = app["spec"]["syncPolicy"]
        assert policy["automated"] == {"prune": True, "selfHeal": True}, app["metadata"]["name"]
        assert app["spec"]["project"] == "socle"
        for source in app["spec"]["sources"]:
            if "chart" in source:
                assert source["targetRevision"][0].isdigit(), source  # an exact version


def test_crds_are_applied_server_side(platform: Platform) -> None:
    apps = {obj["metadata"]["name"]: obj for obj in platform.root if obj["kind"] == "Application"}

    for name in ("kube-prometheus-stack", "argocd"):
        assert "ServerSideApply=true" in apps[name]["spec"]["syncPolicy"]["syncOptions"]


def test_a_changed_rule_changes_only_its_prometheusrule(
    copy_of_repo: Path, platform: Platform, prod_values: dict[str, Any], renderer: Renderer
) -> None:
    rules = copy_of_repo / "gitops" / "monitoring" / "rules" / "socle-agent.rules.yaml"
    rules.write_text(
        rules.read_text().replace("socle_disk_free_ratio < 0.10", "socle_disk_free_ratio < 0.15")
    )

    after = Renderer(repo=copy_of_repo).platform(prod_values)

    assert changed(platform, after) == {("PrometheusRule", "monitoring", "socle-agent")}
    rule = after.find("PrometheusRule", "socle-agent")
    assert "socle_disk_free_ratio < 0.15" in json.dumps(rule)


def test_a_changed_value_changes_only_what_reads_it(
    copy_of_repo: Path, platform: Platform, prod_values: dict[str, Any]
) -> None:
    values = copy_of_repo / "gitops" / "kube-prometheus-stack" / "values.yaml"
    values.write_text(values.read_text().replace("retention: 15d", "retention: 30d"))
    postgresql = copy_of_repo / "gitops" / "postgresql" / "values.yaml"
    postgresql.write_text(postgresql.read_text().replace("size: 10Gi", "size: 20Gi"))

    after = Renderer(repo=copy_of_repo).platform(prod_values)

    assert changed(platform, after) == {
        ("Prometheus", "monitoring", "kps-prometheus"),
        ("StatefulSet", "database", "postgresql"),
    }


def test_a_new_dashboard_adds_one_configmap(
    copy_of_repo: Path, platform: Platform, prod_values: dict[str, Any]
) -> None:
    dashboards = copy_of_repo / "gitops" / "monitoring" / "dashboards"
    (dashboards / "extra.json").write_text('{"title": "extra", "panels": []}\n')

    after = Renderer(repo=copy_of_repo).platform(prod_values)

    assert changed(platform, after) == {("ConfigMap", "monitoring", "dashboard-extra")}


def test_a_removed_manifest_is_pruned_from_the_desired_state(
    copy_of_repo: Path, platform: Platform, prod_values: dict[str, Any]
) -> None:
    """Argo CD prunes what leaves git: the rendered state loses exactly that object."""
    (copy_of_repo / "gitops" / "agent" / "token-secret.yaml").unlink()

    after = Renderer(repo=copy_of_repo).platform(prod_values)

    assert changed(platform, after) == {("Secret", "socle-system", "socle-agent-token")}
    assert ("Secret", "socle-system", "socle-agent-token") not in by_key(after)


def test_the_bootstrap_helmchart_and_argo_cds_own_application_render_the_same_objects(
    renderer: Renderer, platform: Platform, tmp_path: Path
) -> None:
    """Argo CD adopts what k3s's HelmChart installed without changing it: same chart,
    version, release name, namespace and values, so the same objects."""
    from socle import cluster_manifests
    from tests.gitops.conftest import render_versions

    values_text = (REPO / cluster_manifests.ARGOCD_VALUES).read_text()
    chart = cluster_manifests.argocd_helmchart(render_versions(), values_text, handed_over=True)
    spec = chart["spec"]
    values_file = tmp_path / "values.yaml"
    values_file.write_text(spec["valuesContent"])

    # what helm-controller runs: helm install <HelmChart name> <chart> --version --namespace
    bootstrap = renderer.helm_template(
        chart["metadata"]["name"],
        renderer.chart_archive(spec["chart"], spec["version"]),
        spec["targetNamespace"],
        [values_file],
    )

    assert json.dumps(sorted(bootstrap, key=key), sort_keys=True) == json.dumps(
        sorted(platform.applications["argocd"], key=key), sort_keys=True
    )
