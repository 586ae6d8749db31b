"""What the phase 4-6 deploys write: pinned, aborting, handed over, secrets kept apart."""

from __future__ import annotations

import yaml

from socle import cluster_manifests as manifests
from tests.gitops.conftest import render_versions


def test_the_bootstrap_helmchart_pins_the_chart_and_aborts_on_failure() -> None:
    versions = render_versions()
    chart = manifests.argocd_helmchart(versions, "a: 1\n", handed_over=False)

    assert chart["spec"]["version"] == versions.charts["argo-cd"].version
    assert chart["spec"]["repo"] == versions.charts["argo-cd"].repository
    assert chart["spec"]["failurePolicy"] == "abort"
    assert chart["metadata"]["name"] == manifests.ARGOCD_RELEASE
    assert chart["spec"]["targetNamespace"] == "argocd"
    assert manifests.UNMANAGED_ANNOTATION not in chart["metadata"]["annotations"]


def test_once_handed_over_helm_controller_leaves_the_release_alone() -> None:
    chart = manifests.argocd_helmchart(render_versions(), "", handed_over=True)

    assert chart["metadata"]["annotations"][manifests.UNMANAGED_ANNOTATION] == "true"
    # the same chart and values: nothing would change if it were ever managed again
    assert chart["spec"] == manifests.argocd_helmchart(render_versions(), "", False)["spec"]


def test_the_root_application_syncs_gitops_root_by_itself() -> None:
    values = {"repository": {"url": "https://git.example.org/socle.git", "revision": "main"}}
    root = manifests.root_application(values)

    assert root["spec"]["source"]["path"] == "gitops/root"
    assert root["spec"]["source"]["helm"]["valuesObject"] == values
    assert root["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_secrets_hold_their_keys_and_are_never_written_as_manifests_of_git() -> None:
    secret = manifests.postgresql_secret("pw")
    text = manifests.manifest_text(secret)

    assert yaml.safe_load(text)["stringData"] == {"username": "postgres", "password": "pw"}
    assert manifests.SECRETS_DIR.startswith("/etc/socle/")
    assert not manifests.SECRETS_DIR.startswith(manifests.MANIFESTS_DIR)
    repo = manifests.repository_secret("https://git.example.org/x.git", {"password": "t"})
    assert repo["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
