"""The whole platform on a fresh test host: `deploys/all.py`, then a run that changes nothing,
phases 4 to 6 checked in the cluster, and a restart that everything survives.

k3s is the stand-in (tests/standins/k3s.py): it records what is applied and plays
helm-controller, Argo CD and the workloads from the real charts' renderings
(tests/hosts/platform_node.py); no container runs. The node is shared with
tests/hosts/test_verify.py (tests/hosts/conftest.py); the restart comes last here.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from socle import cluster_manifests
from socle.exposure import exposures_of, refused_exposures
from socle.gitops_values import root_values
from socle.versions import load_versions
from tests.gitops import checks
from tests.gitops.render import crd_schemas_dir
from tests.harness.hosts import REPO_ROOT, changed_operations
from tests.hosts.conftest import PlatformNode
from tests.hosts.k3s_node import apply, config_map, kubectl, kubectl_json
from tests.hosts.platform_node import GRAFANA_KEY, POSTGRESQL_KEY, merged_data, renderings
from tests.hosts.probes import scan_tcp, tcp_answers, wait_until

pytestmark = pytest.mark.host

VPN_ADDRESS = "10.8.0.1"
PHASES = ("baseline", "wireguard", "k3s", "argocd", "monitoring", "postgresql", "offsite",
          "agent")  # fmt: skip
APPLICATIONS = {"socle-root", "argocd", "agent", "kube-prometheus-stack", "monitoring",
                "postgresql", "postgres-exporter"}  # fmt: skip
DATASTORE = "/var/lib/rancher/k3s/server/db/state.db"
# Reads kine's table (the stand-in's datastore, as k3s keeps it) as root on the node.
REVISIONS_PROGRAM = r"""
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
rows = conn.execute("SELECT id, name, deleted, value FROM kine WHERE name IN (%s) ORDER BY id"
                    % ",".join("?" * (len(sys.argv) - 2)), sys.argv[2:]).fetchall()
print(json.dumps([[i, n, d, (v or b"").decode()] for i, n, d, v in rows]))
"""


def values_of(deployed: PlatformNode) -> dict[str, Any]:
    """The root Application's values, as deploys/argocd.py computes them for this node."""
    data = merged_data(deployed.data)
    return root_values(data, load_versions(Path(data["socle_versions_file"])))


def revisions(deployed: PlatformNode, *keys: str) -> list[tuple[int, str, int, str]]:
    """Every kine revision of ``keys``, oldest first: (id, key, deleted, value)."""
    out = deployed.node.exec(["python3", "-c", REVISIONS_PROGRAM, DATASTORE, *keys]).stdout
    return [tuple(row) for row in json.loads(out)]  # type: ignore[misc]


def test_the_first_run_goes_through_every_phase_in_order_with_its_time(
    deployed: PlatformNode,
) -> None:
    lines = [line for line in deployed.first_run.stderr.splitlines() if line.startswith("==> ")]
    print(f"first run of deploys/all.py: {deployed.first_run_seconds:.1f} s")

    started = [line.split()[2].split("/")[0] + " " + line.split()[3].rstrip(":")
               for line in lines if line.endswith("starting")]  # fmt: skip
    done = [line for line in lines if ": done in " in line]
    # every phase but the off-site one (no `offsite` in this host's data), in order
    assert started == [f"{n} {name}" for n, name in enumerate(PHASES, 1) if name != "offsite"]
    assert len(done) == len(PHASES) - 1
    assert "==> phase 7/8 offsite: nothing to do on these hosts" in lines
    assert not [line for line in lines if "FAILED" in line]
    assert changed_operations(deployed.first_run.stdout)


def test_a_second_run_changes_nothing(deployed: PlatformNode) -> None:
    second = deployed.deploy("--json")

    assert changed_operations(second.stdout) == []


def test_argocd_is_handed_over_before_the_root_application_is_written(
    deployed: PlatformNode,
) -> None:
    chart, record, root = ("/registry/helmcharts/kube-system/argocd",
                           "/registry/secrets/argocd/sh.helm.release.v1.argocd.v1",
                           "/registry/applications/argocd/socle-root")  # fmt: skip
    history = revisions(deployed, chart, record, root)

    unmanaged = min(i for i, key, _, value in history
                    if key == chart and cluster_manifests.UNMANAGED_ANNOTATION in value)
    installed = min(i for i, key, deleted, _ in history if key == record and not deleted)
    records_gone = min(i for i, key, deleted, _ in history if key == record and deleted)
    root_written = min(i for i, key, _, _ in history if key == root)
    assert installed < unmanaged < records_gone < root_written
    helmchart = kubectl_json(deployed.node, "get", "helmchart", "argocd", "-n", "kube-system")
    assert helmchart["spec"]["version"] == load_versions().charts["argo-cd"].version
    assert helmchart["spec"]["failurePolicy"] == "abort"
    assert kubectl_json(deployed.node, "get", "secrets", "-n", "argocd",
                        "-l", "owner=helm")["items"] == []  # fmt: skip


def test_the_root_application_brings_every_application_synced(deployed: PlatformNode) -> None:
    items = kubectl_json(deployed.node, "get", "applications", "-n", "argocd")["items"]

    states = {app["metadata"]["name"]: (app["status"]["sync"]["status"],
                                        app["status"]["health"]["status"]) for app in items}
    assert set(states) == APPLICATIONS
    assert set(states.values()) == {("Synced", "Healthy")}
    # played by the stand-in, and saying so
    assert all("stand-in" in app["status"]["standin"]["note"] for app in items)


def test_the_manifests_k3s_auto_deploys_are_the_ones_the_render_tests_validate(
    deployed: PlatformNode,
) -> None:
    folder = cluster_manifests.MANIFESTS_DIR
    names = deployed.node.exec(f"ls {folder}").stdout.split()
    on_node = {name: yaml.safe_load_all(deployed.node.exec(f"cat {folder}/{name}").stdout)
               for name in names if name != "socle-traefik-config.yaml"}  # fmt: skip
    objects = [obj for documents in on_node.values() for obj in documents if obj]
    values = values_of(deployed)
    versions = load_versions(Path(merged_data(deployed.data)["socle_versions_file"]))
    argocd_values = (REPO_ROOT / cluster_manifests.ARGOCD_VALUES).read_text()
    book = checks.SchemaBook()
    for rendering in renderings(deployed.data).values():
        book.add_crds(rendering["objects"], "rendered")
    if crd_schemas_dir() is not None:
        book.add_folder(crd_schemas_dir())  # type: ignore[arg-type]

    problems, builtin, custom = checks.validate_objects(
        objects, versions.k3s.kubernetes_version, book
    )

    assert sorted(names) == ["socle-argocd.yaml", "socle-namespace-database.yaml",
                             "socle-namespace-monitoring.yaml", "socle-root-application.yaml",
                             "socle-traefik-config.yaml"]  # fmt: skip
    assert sorted(objects, key=checks.name_of) == sorted([
        cluster_manifests.argocd_helmchart(versions, argocd_values, handed_over=True),
        cluster_manifests.root_application(values),
        cluster_manifests.namespace("monitoring"),
        cluster_manifests.namespace("database"),
    ], key=checks.name_of)  # fmt: skip
    assert problems == [] and builtin == 2 and custom == 2
    modes = deployed.node.exec(f"stat -c '%a %U' {folder}/socle-*.yaml").stdout.split("\n")
    assert all(mode.startswith("600 root") for mode in modes if mode)


def test_secrets_come_from_sops_and_no_other_user_sees_them(deployed: PlatformNode) -> None:
    node = deployed.node
    grafana = kubectl_json(node, "get", "secret", "grafana-admin", "-n", "monitoring")
    database = kubectl_json(node, "get", "secret", "postgresql-credentials", "-n", "database")
    files = node.exec("stat -c '%n %a %U' /etc/socle/kube-secrets "
                      "/etc/socle/kube-secrets/*").stdout.splitlines()  # fmt: skip
    output = deployed.first_run.stdout + deployed.first_run.stderr

    def clear(secret: dict[str, Any], key: str) -> str:
        return base64.b64decode(secret["data"][key]).decode()

    assert clear(grafana, "admin-password") == deployed.secrets[GRAFANA_KEY]
    assert clear(grafana, "admin-user") == "admin"
    assert clear(database, "password") == deployed.secrets[POSTGRESQL_KEY]
    assert clear(database, "username") == "postgres"
    assert files[0].endswith(" 700 root")
    assert sorted(line.split()[0].rsplit("/", 1)[1] for line in files[1:]) == [
        "database-postgresql-credentials.yaml", "monitoring-alertmanager-smtp.yaml",
        "monitoring-grafana-admin.yaml"]  # fmt: skip
    assert all(line.endswith(" 600 root") for line in files[1:])
    # An unprivileged user read every command line and file it could during the first
    # run: never a secret. Nor did the deploy's own output show one.
    assert deployed.spied["hits"] == [] and int(deployed.spied["looks"]) > 20
    assert not [name for name, value in deployed.secrets.items() if value in output]


def test_nothing_is_public_with_the_whole_platform_in_the_cluster(deployed: PlatformNode) -> None:
    node = deployed.node
    listing = kubectl_json(node, "get", "services,pods", "-A")["items"]
    exposures = exposures_of(listing)
    exporter = [pod for pod in listing if pod["kind"] == "Pod"
                and "node-exporter" in pod["metadata"]["name"]]  # fmt: skip

    on_vpn = {(e.namespace, e.name) for e in exposures if e.how == "externalIPs"}
    assert on_vpn == {("monitoring", "kps-grafana"), ("monitoring", "kps-prometheus"),
                      ("monitoring", "kps-alertmanager"), ("database", "postgresql-vpn")}
    assert refused_exposures(exposures, vpn_address=VPN_ADDRESS) == []
    # node-exporter runs off the host's network: no host port 9100 to allow
    assert len(exporter) == 1 and not exporter[0]["spec"].get("hostNetwork")
    assert not [p for c in exporter[0]["spec"]["containers"] for p in c.get("ports") or []
                if "hostPort" in p]  # fmt: skip
    assert scan_tcp(deployed.outsider, node.address) == [22]


def test_after_a_restart_everything_is_back_and_data_reads_back(deployed: PlatformNode) -> None:
    node = deployed.node
    marker = "written before the restart"
    node.exec(["runuser", "-u", "postgres", "--", "psql", "-q", "-d", "app", "-c",
               "CREATE TABLE IF NOT EXISTS restart_check (note text); "
               f"INSERT INTO restart_check VALUES ('{marker}')"])  # fmt: skip
    apply(node, config_map("restart-check"))
    rules = node.exec("ufw show added").stdout

    node.restart()

    wait_until(lambda: node.exec("systemctl is-active wg-quick@wg0 k3s socle-agent",
                                 check=False).returncode == 0, "WireGuard, k3s and the agent")
    wait_until(lambda: kubectl(node, "get", "nodes", check=False).returncode == 0, "k3s's API")
    assert node.exec("ufw status").stdout.startswith("Status: active")
    assert node.exec("ufw show added").stdout == rules
    wait_until(lambda: tcp_answers(deployed.admin, VPN_ADDRESS, 6443), "the API over the VPN")
    assert scan_tcp(deployed.outsider, node.address) == [22]
    # the agent's schedule runs again: its frequent disk check, twice since the boot
    wait_until(lambda: node.exec("journalctl -b -u socle-agent -o cat").stdout.count(
        "disk_check: ok") >= 2, "the agent's scheduled disk check, twice", timeout=120)
    # data written before reads back after
    rows = node.exec(["runuser", "-u", "postgres", "--", "psql", "-tA", "-d", "app", "-c",
                      "SELECT note FROM restart_check"]).stdout.split("\n")  # fmt: skip
    assert marker in rows
    kept = kubectl_json(node, "get", "configmap", "restart-check", "-n", "default")
    assert kept["data"]["written"] == "restart-check"
    applications = kubectl_json(node, "get", "applications", "-n", "argocd")["items"]
    assert {app["metadata"]["name"] for app in applications} == APPLICATIONS
