"""Every object of phases 4 to 6, rendered with the real charts and validated offline.

The platform is what Argo CD applies from gitops/ (tests/gitops/render.py) plus what the
deploys write (socle.cluster_manifests). Built-in kinds are validated strictly with
kubernetes-validate at the pinned k3s version, custom resources against the CRDs the
charts render or the schemas in shared/schemas/crds. Then socle's own rules are asserted,
and each rule is shown to catch a broken value.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from socle import cluster_manifests
from socle.versions import load_versions
from tests.gitops import checks
from tests.gitops.conftest import render_versions
from tests.gitops.render import Platform, Renderer, crd_schemas_dir
from tests.gitops.values_keys import ChartKeys, unknown_keys

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = load_versions().k3s.kubernetes_version
VPN_ADDRESS = "10.8.0.1"
# socle's values for each pinned chart, and top-level keys kept for socle's own templates.
VALUES_FILES = {
    "kube-prometheus-stack": ("gitops/kube-prometheus-stack/values.yaml", ("socle",)),
    "argo-cd": ("gitops/argocd/values.yaml", ()),
    "prometheus-postgres-exporter": ("gitops/postgres-exporter/values.yaml", ()),
}


def deploy_manifests(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the phase 4-6 deploys write or apply (Secrets with stand-in values)."""
    versions = render_versions()
    argocd_values = (REPO / cluster_manifests.ARGOCD_VALUES).read_text()
    return [
        cluster_manifests.argocd_helmchart(versions, argocd_values, handed_over=False),
        cluster_manifests.argocd_helmchart(versions, argocd_values, handed_over=True),
        cluster_manifests.root_application(values),
        cluster_manifests.namespace("monitoring"),
        cluster_manifests.namespace("database"),
        cluster_manifests.repository_secret(
            values["repository"]["url"], {"username": "u", "password": "p"}
        ),
        cluster_manifests.postgresql_secret("stand-in"),
        cluster_manifests.alertmanager_smtp_secret("stand-in"),
        cluster_manifests.grafana_admin_secret("admin", "stand-in"),
    ]


@pytest.fixture(scope="module")
def objects(platform: Platform, prod_values: dict[str, Any]) -> list[dict[str, Any]]:
    """The whole of phases 4 to 6."""
    return [obj for _, obj in platform.objects()] + deploy_manifests(prod_values)


@pytest.fixture(scope="module")
def schemas(objects: list[dict[str, Any]]) -> checks.SchemaBook:
    book = checks.SchemaBook()
    book.add_crds(objects, "rendered")
    folder = crd_schemas_dir()
    if folder is not None and folder.is_dir():
        book.add_folder(folder)
    return book


def test_the_platform_renders_every_application(platform: Platform) -> None:
    assert set(platform.applications) == {
        "argocd",
        "agent",
        "kube-prometheus-stack",
        "monitoring",
        "postgresql",
        "postgres-exporter",
    }
    for name, objects in platform.applications.items():
        assert objects, f"{name} rendered nothing"


def test_every_object_validates_offline(
    objects: list[dict[str, Any]], schemas: checks.SchemaBook
) -> None:
    problems, builtin, custom = checks.validate_objects(objects, KUBERNETES_VERSION, schemas)

    assert problems == []
    assert builtin + custom == len(objects)
    assert builtin > 100 and custom > 40
    kinds = {(obj["apiVersion"], obj["kind"]) for obj in objects}
    # the CRs socle writes are among them, each checked against a schema
    assert {
        ("helm.cattle.io/v1", "HelmChart"),
        ("argoproj.io/v1alpha1", "Application"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    } <= kinds


def test_helmchart_schema_comes_from_the_shared_schemas_or_is_said_missing(
    schemas: checks.SchemaBook,
) -> None:
    """No chart renders k3s's HelmChart CRD: its schema must come from shared/schemas."""
    if crd_schemas_dir() is None:
        pytest.skip("no shared/schemas/crds (set SOCLE_CRD_SCHEMAS_DIR): HelmChart not validated")
    assert ("helm.cattle.io", "v1", "HelmChart") in schemas.schemas


def test_validation_rejects_a_wrong_builtin_field_and_an_unknown_custom_field(
    platform: Platform, schemas: checks.SchemaBook
) -> None:
    service = copy.deepcopy(platform.find("Service", "postgresql", "database"))
    service["spec"]["ports"][0]["port"] = "5432/tcp"
    rule = copy.deepcopy(platform.find("PrometheusRule", "socle-agent", "monitoring"))
    rule["spec"]["groups"][0]["rules"][0]["fore"] = "5m"
    chart = cluster_manifests.argocd_helmchart(render_versions(), "", handed_over=False)
    chart["spec"]["failurePolicy"] = "retry"

    problems, _, _ = checks.validate_objects([service, rule, chart], KUBERNETES_VERSION, schemas)

    assert any("Service database/postgresql" in p and "ports" in p for p in problems), problems
    assert any("PrometheusRule monitoring/socle-agent" in p and "fore" in p for p in problems)
    if crd_schemas_dir() is not None:
        assert any("HelmChart" in p and "failurePolicy" in p for p in problems), problems


def test_every_container_has_requests_and_limits(objects: list[dict[str, Any]]) -> None:
    assert checks.missing_resources(objects) == []
    assert len(list(checks.containers(objects))) > 15


def test_the_requests_fit_a_4gb_node(objects: list[dict[str, Any]]) -> None:
    cpu, memory = checks.requested(objects)
    print(
        f"requests: {cpu} CPU, {memory / 2**20:.0f}Mi of {checks.POD_BUDGET_MEMORY / 2**20:.0f}Mi"
    )

    assert checks.over_budget(objects) == []
    # Prometheus and the Argo CD controller alone request more than this
    assert memory > 1024**3


def test_every_image_is_pinned_by_digest_or_exact_version(objects: list[dict[str, Any]]) -> None:
    images = dict(checks.image_references(objects))

    assert checks.unpinned_images(objects) == []
    postgresql = images["StatefulSet database/postgresql"]
    assert postgresql.startswith("docker.io/library/postgres:16.") and "@sha256:" in postgresql


def test_nothing_answers_outside_cluster_ip_but_on_the_vpn_address(
    objects: list[dict[str, Any]],
) -> None:
    assert checks.exposed(objects, VPN_ADDRESS) == []
    on_vpn = {
        checks.name_of(obj) for obj in objects
        if obj["kind"] == "Service" and obj["spec"].get("externalIPs")
    }  # fmt: skip
    assert on_vpn == {
        "Service monitoring/kps-alertmanager",
        "Service monitoring/kps-prometheus",
        "Service monitoring/kps-grafana",
        "Service database/postgresql-vpn",
    }


def test_scrapes_and_rules_k3s_cannot_satisfy_are_off(objects: list[dict[str, Any]]) -> None:
    assert checks.k3s_absent_scrapes_and_rules(objects) == []
    rules = {
        rule.get("alert") for obj in objects if obj["kind"] == "PrometheusRule"
        for group in obj["spec"]["groups"] for rule in group["rules"]
    }  # fmt: skip
    # what a single k3s node can and must still alert on
    assert {
        "Watchdog",
        "KubeAPIDown",
        "KubeNodeNotReady",
        "NodeFilesystemAlmostOutOfSpace",
        "PostgresqlDown",
        "SocleBackupTooOld",
        "SocleDrillFailed",
    } <= rules


def test_the_k3s_check_catches_the_charts_defaults(renderer: Renderer, platform: Platform) -> None:
    """With the chart's defaults for k3s's components, the check finds their scrapes."""
    kps = next(o for o in platform.root if o["metadata"]["name"] == "kube-prometheus-stack")
    broken = copy.deepcopy(kps)
    values = broken["spec"]["sources"][0]["helm"]["valuesObject"]
    values.update(
        {
            "kubeProxy": {"enabled": True},
            "kubeEtcd": {"enabled": True},
            "defaultRules": {
                "rules": {"etcd": True},
                "disabled": {"KubeCPUOvercommit": False, "KubeMemoryOvercommit": False},
            },
        }
    )

    problems = checks.k3s_absent_scrapes_and_rules(renderer.application(broken))

    assert any("kube-proxy" in p for p in problems), problems
    assert any("etcd" in p for p in problems), problems
    assert any("KubeCPUOvercommit" in p for p in problems), problems


def test_an_unpinned_image_fails_the_image_check(renderer: Renderer, platform: Platform) -> None:
    exporter = next(o for o in platform.root if o["metadata"]["name"] == "postgres-exporter")
    broken = copy.deepcopy(exporter)
    broken["spec"]["sources"][0]["helm"]["valuesObject"] = {"image": {"tag": "latest"}}

    problems = checks.unpinned_images(renderer.application(broken))

    assert problems == [
        "Deployment database/postgres-exporter: image "
        "'quay.io/prometheuscommunity/postgres-exporter:latest' is not pinned by digest or "
        "exact version"
    ]
    assert checks.unpinned_images([{"kind": "Pod"}]) == []
    assert checks.unpinned_images(
        [
            {
                "kind": "Job",
                "metadata": {"name": "j"},
                "spec": {
                    "template": {"spec": {"containers": [{"name": "c", "image": "postgres:16"}]}}
                },
            }
        ]
    )


def test_the_other_rules_catch_broken_objects(platform: Platform) -> None:
    statefulset = copy.deepcopy(platform.find("StatefulSet", "postgresql", "database"))
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    del container["resources"]["limits"]
    container["ports"][0]["hostPort"] = 5432
    service = copy.deepcopy(platform.find("Service", "postgresql", "database"))
    service["spec"]["type"] = "NodePort"
    public = copy.deepcopy(platform.find("Service", "postgresql-vpn", "database"))
    public["spec"]["externalIPs"] = ["203.0.113.10"]
    prometheus = copy.deepcopy(platform.find("Prometheus", "kps-prometheus", "monitoring"))
    prometheus["spec"]["resources"]["requests"]["memory"] = "4Gi"

    assert checks.missing_resources([statefulset]) == [
        "StatefulSet database/postgresql: container postgresql has no limits.cpu",
        "StatefulSet database/postgresql: container postgresql has no limits.memory",
    ]
    assert checks.exposed([statefulset, service, public], VPN_ADDRESS) == [
        "StatefulSet database/postgresql: container postgresql has hostPort 5432",
        "Service database/postgresql is of type NodePort: public, whatever UFW says",
        "Service database/postgresql-vpn answers on 203.0.113.10, not the VPN address",
    ]
    assert (
        checks.exposed(
            [
                {
                    "kind": "Service",
                    "metadata": {"namespace": "kube-system", "name": "traefik"},
                    "spec": {"type": "LoadBalancer"},
                }
            ],
            VPN_ADDRESS,
        )
        == []
    )
    assert checks.over_budget([prometheus]) != []


def test_socles_values_use_only_keys_their_charts_know() -> None:
    charts = render_charts_folder()
    for chart, (values_file, own) in VALUES_FILES.items():
        keys = ChartKeys.from_archive(
            charts / f"{chart}-{load_versions().charts[chart].version}.tgz"
        )
        values = yaml.safe_load((REPO / values_file).read_text())

        assert unknown_keys(values, keys, own) == [], values_file


def test_a_typo_in_a_values_key_is_caught() -> None:
    charts = render_charts_folder()
    keys = ChartKeys.from_archive(
        charts
        / f"kube-prometheus-stack-{load_versions().charts['kube-prometheus-stack'].version}.tgz"
    )
    values = yaml.safe_load((REPO / VALUES_FILES["kube-prometheus-stack"][0]).read_text())
    spec = values["prometheus"]["prometheusSpec"]
    spec["retentionSzie"] = spec.pop("retentionSize")
    values["prometheus-node-exporter"]["hostNetwrk"] = False

    assert unknown_keys(values, keys, ("socle",)) == [
        "prometheus-node-exporter.hostNetwrk",
        "prometheus.prometheusSpec.retentionSzie",
    ]


def test_socles_own_charts_use_only_their_keys(prod_values: dict[str, Any]) -> None:
    """gitops/postgresql gets its values from the root: each key it is given, it reads."""
    keys = ChartKeys.from_folder(REPO / "gitops" / "postgresql")
    given = {"image": "x", "vpnAddress": "x", "vpnNetwork": "x"}

    assert unknown_keys(given, keys) == []
    assert unknown_keys({"vpnAdress": "x"}, keys) == ["vpnAdress"]


def test_renders_are_the_same_on_every_run(renderer: Renderer, platform: Platform) -> None:
    """No random value (a generated password) in the render: Argo CD would never settle."""
    kps = next(o for o in platform.root if o["metadata"]["name"] == "kube-prometheus-stack")
    again = renderer.application(kps)

    def digest(objects: list[dict[str, Any]]) -> str:
        return hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()

    assert digest(again) == digest(platform.applications["kube-prometheus-stack"])


def render_charts_folder() -> Path:
    from tests.gitops.conftest import require_render_tools
    from tests.gitops.render import charts_dir

    require_render_tools()
    folder = charts_dir()
    assert folder is not None
    return folder


def pods_and_services(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Services, and one Pod per workload made from its template, as the cluster
    would hold them: what the deploy's exposure guard reads."""
    listed = [obj for obj in objects if obj["kind"] == "Service"]
    for obj in objects:
        spec = checks.pod_spec(obj)
        if spec is not None:
            listed.append({"kind": "Pod", "metadata": {
                "name": f"{obj['metadata']['name']}-0",
                "namespace": obj["metadata"].get("namespace", "default")},
                "spec": spec, "status": {"phase": "Running"}})  # fmt: skip
    return listed


def test_the_exposure_guard_passes_the_platform_and_refuses_node_exporter_on_the_host(
    renderer: Renderer, platform: Platform, objects: list[dict[str, Any]]
) -> None:
    from socle.exposure import exposures_of, refused_exposures

    exposures = exposures_of(pods_and_services(objects))
    kps = next(o for o in platform.root if o["metadata"]["name"] == "kube-prometheus-stack")
    broken = copy.deepcopy(kps)
    values = broken["spec"]["sources"][0]["helm"]["valuesObject"]
    values["prometheus-node-exporter"] = {"hostNetwork": True}  # the chart's default
    on_host = exposures_of(pods_and_services(renderer.application(broken)))

    assert refused_exposures(exposures, vpn_address=VPN_ADDRESS) == []
    assert {e.how for e in exposures} == {"externalIPs"}
    assert [e.describe() for e in refused_exposures(on_host, vpn_address=VPN_ADDRESS)] == [
        "Pod kps-prometheus-node-exporter-0 in namespace monitoring: hostNetwork 9100"
    ]
