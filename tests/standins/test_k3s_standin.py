"""The stand-in k3s keeps the contract the deploys and later phases rely on.

It runs here as built for a test host (a zip application), under a root folder of its
own, with the notification socket systemd would give it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import wait_for
from tests.standins.k3s_build import (
    STANDIN_POSTGRESQL_DIGEST,
    build_binary,
    make_release,
    sha256_of,
    write_versions_file,
)
from tests.standins.k3s_controllers import (
    PLAYED_BY,
    application_sources_sha256,
    helmchart_values_sha256,
)

VERSION = "v1.33.2+k3s1"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Standin:
    binary: Path
    root: Path
    env: dict[str, str]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args], input=stdin, env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)

    def kubectl_json(self, *args: str) -> dict:
        done = self.run("kubectl", *args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    @property
    def data_dir(self) -> Path:
        return self.root / "var" / "lib" / "rancher" / "k3s"


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    work = tmp_path_factory.mktemp("standin")
    binary = build_binary(VERSION, work / "k3s")
    root = work / "root"
    config = root / "etc" / "rancher" / "k3s" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'write-kubeconfig-mode: "0600"\nhttps-listen-port: {free_port()}\n'
        "secrets-encryption: true\n"
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(work / "notify"))
    notify.settimeout(60)
    env = {**os.environ, "K3S_STANDIN_ROOT": str(root), "NOTIFY_SOCKET": str(work / "notify")}
    server = subprocess.Popen([str(binary), "server"], env=env, stdout=subprocess.DEVNULL)
    try:
        assert notify.recv(64) == b"READY=1"
        yield Standin(binary, root, {**env, "NOTIFY_SOCKET": ""})
    finally:
        server.terminate()
        server.wait(timeout=30)
        notify.close()


def test_version_is_the_one_built_for(tmp_path: Path) -> None:
    binary = build_binary("v1.34.1+k3s1", tmp_path / "k3s")

    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                          check=True)

    assert done.stdout.splitlines()[0] == "k3s version v1.34.1+k3s1 (stand-in)"


def test_builds_are_reproducible_and_differ_by_version(tmp_path: Path) -> None:
    first = build_binary(VERSION, tmp_path / "a")
    second = build_binary(VERSION, tmp_path / "b")
    other = build_binary("v1.34.1+k3s1", tmp_path / "c")

    assert sha256_of(first) == sha256_of(second) != sha256_of(other)


def test_versions_file_pins_the_release(tmp_path: Path) -> None:
    from socle.versions import load_versions

    release = make_release(VERSION, tmp_path)
    versions = load_versions(write_versions_file(tmp_path / "versions.toml", release))

    assert versions.k3s.version == VERSION
    assert versions.k3s.artefacts("amd64").require_binary() == release.binary_sha256
    assert versions.postgresql.require_reference().endswith(STANDIN_POSTGRESQL_DIGEST)
    assert sha256_of(release.airgap_dir / "k3s-airgap-images-amd64.tar.gz") == (
        versions.k3s.artefacts("amd64").require_airgap_images()
    )


def test_server_keeps_a_wal_datastore_with_kine_schema_and_writes(standin: Standin) -> None:
    db = standin.data_dir / "server" / "db" / "state.db"
    conn = sqlite3.connect(db)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(kine)")]
        first = conn.execute("SELECT max(id) FROM kine").fetchone()[0]
        subprocess.run(["sleep", "2.5"], check=True)
        later = conn.execute("SELECT max(id) FROM kine").fetchone()[0]
    finally:
        conn.close()

    assert mode == "wal"
    assert columns[:3] == ["id", "name", "created"] and "old_value" in columns
    assert later > first


def test_server_writes_token_tls_cred_and_private_kubeconfig(standin: Standin) -> None:
    server = standin.data_dir / "server"
    kubeconfig = standin.root / "etc" / "rancher" / "k3s" / "k3s.yaml"

    assert (server / "token").read_text().startswith("K10")
    assert (server / "tls" / "server-ca.crt").exists()
    assert (server / "cred" / "encryption-config.json").exists()
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert "certificate-authority-data" in kubeconfig.read_text()


def test_node_is_ready_with_the_version(standin: Standin) -> None:
    nodes = standin.kubectl_json("get", "nodes")

    (node,) = nodes["items"]
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == VERSION


def test_apply_records_get_returns_delete_removes(standin: Standin) -> None:
    applied = standin.run("kubectl", "apply", "-f", str(REPO / "gitops" / "agent"))
    namespace = standin.run(
        "kubectl", "apply", "-f", "-",
        stdin="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: database\n",
    )  # fmt: skip
    again = standin.run("kubectl", "apply", "-f", str(REPO / "gitops" / "agent"))

    assert applied.returncode == 1  # the Role's namespace did not exist yet
    assert 'namespaces "database" not found' in applied.stderr
    assert "serviceaccount/socle-agent created" in applied.stdout
    assert namespace.returncode == 0
    assert again.returncode == 0, again.stderr
    assert "role.rbac.authorization.k8s.io/socle-agent created" in again.stdout
    assert "serviceaccount/socle-agent unchanged" in again.stdout
    role = standin.kubectl_json("get", "role", "socle-agent", "-n", "database")
    assert role["rules"][0]["resourceNames"] == ["postgresql"]

    deleted = standin.run("kubectl", "delete", "namespace", "database")
    gone = standin.run("kubectl", "get", "role", "socle-agent", "-n", "database")

    assert deleted.returncode == 0
    assert gone.returncode == 1 and "NotFound" in gone.stderr


def test_service_account_token_is_filled_once(standin: Standin) -> None:
    standin.run("kubectl", "apply", "-f", str(REPO / "gitops" / "agent" / "namespace.yaml"))
    standin.run("kubectl", "apply", "-f", str(REPO / "gitops" / "agent" / "token-secret.yaml"))
    first = standin.kubectl_json("get", "secret", "socle-agent-token", "-n", "socle-system")
    standin.run("kubectl", "apply", "-f", str(REPO / "gitops" / "agent" / "token-secret.yaml"))
    second = standin.kubectl_json("get", "secret", "socle-agent-token", "-n", "socle-system")

    assert first["data"]["token"] and first["data"]["ca.crt"]
    assert second["data"]["token"] == first["data"]["token"]


def test_fixture_files_are_listed_with_recorded_objects(standin: Standin) -> None:
    fixtures = standin.data_dir / "standin" / "objects"
    fixtures.mkdir(parents=True, exist_ok=True)
    (fixtures / "traefik.json").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "traefik", "namespace": "kube-system"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]},
    }))  # fmt: skip
    standin.run("kubectl", "apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 8080}]},
    }))  # fmt: skip

    listed = standin.kubectl_json("get", "services,pods", "-A")

    names = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in listed["items"]}
    assert {("kube-system", "traefik"), ("default", "web")} <= names


def test_unknown_resource_and_flags_are_refused(standin: Standin) -> None:
    unknown = standin.run("kubectl", "get", "widgets")
    flag = standin.run("kubectl", "get", "pods", "--sort-by=.metadata.name")

    assert unknown.returncode == 1 and "resource type" in unknown.stderr
    assert flag.returncode == 1 and "not supported" in flag.stderr


def test_kubectl_fails_when_the_api_does_not_answer(tmp_path: Path) -> None:
    binary = build_binary(VERSION, tmp_path / "k3s")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "clusters:\n- name: default\n  cluster:\n"
        f"    server: https://127.0.0.1:{free_port()}\n"
    )
    done = subprocess.run(
        [str(binary), "kubectl", "get", "nodes", "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "K3S_STANDIN_ROOT": str(tmp_path)},
    )  # fmt: skip

    assert done.returncode == 1
    assert "was refused" in done.stderr


def get_json(standin: Standin, *args: str) -> dict[str, Any] | None:
    done = standin.run("kubectl", "get", *args, "-o", "json")
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_delete_by_label_selector_removes_only_the_matching(standin: Standin) -> None:
    for name, owner in (("a", "helm"), ("b", "helm"), ("c", "other")):
        standin.run("kubectl", "apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": f"rel-{name}", "labels": {"owner": owner, "name": "rel"}},
        }))  # fmt: skip

    deleted = standin.run("kubectl", "delete", "secret", "-l", "owner=helm,name=rel",
                          "--ignore-not-found")
    again = standin.run("kubectl", "delete", "secret", "-l", "owner=helm,name=rel",
                        "--ignore-not-found")

    assert deleted.returncode == 0 and deleted.stdout.count("deleted") == 2
    assert again.returncode == 0
    names = {o["metadata"]["name"] for o in standin.kubectl_json("get", "secrets")["items"]}
    assert "rel-c" in names and not {"rel-a", "rel-b"} & names


ARGO_VALUES = "server:\n  replicas: 1\n"
ARGO_OBJECTS = [
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": "applications.argoproj.io"},
     "spec": {"group": "argoproj.io", "scope": "Namespaced",
              "names": {"kind": "Application", "plural": "applications"},
              "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                            "schema": {"openAPIV3Schema": {"type": "object"}}}]}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "argocd-server"},
     "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "server"}},
                                          "spec": {"containers": [{"name": "s"}]}}}},
    {"apiVersion": "apps/v1", "kind": "StatefulSet",
     "metadata": {"name": "argocd-application-controller"},
     "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "controller"}},
                                          "spec": {"containers": [{"name": "c"}]}}}},
]  # fmt: skip
CHILD = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
    "metadata": {"name": "exporter", "namespace": "argocd"},
    "spec": {"destination": {"namespace": "metrics"},
             "source": {"repoURL": "https://git.socle.invalid/x.git", "path": "exporter"},
             "syncPolicy": {"syncOptions": ["CreateNamespace=true"]}},
}  # fmt: skip
EXPORTER = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-exporter"},
    "spec": {"template": {"metadata": {"labels": {"app": "node-exporter"}},
                          "spec": {"hostNetwork": False,
                                   "containers": [{"name": "e", "ports": [
                                       {"containerPort": 9100}]}]}}},
}  # fmt: skip


def helmchart(version: str, unmanaged: bool = False) -> str:
    annotations = {"helmcharts.helm.cattle.io/unmanaged": "true"} if unmanaged else {}
    return json.dumps({
        "apiVersion": "helm.cattle.io/v1", "kind": "HelmChart",
        "metadata": {"name": "argocd", "namespace": "kube-system", "annotations": annotations},
        "spec": {"chart": "argo-cd", "version": version, "targetNamespace": "argocd",
                 "createNamespace": True, "valuesContent": ARGO_VALUES},
    })  # fmt: skip


def test_controllers_install_a_helmchart_sync_applications_and_run_workloads(
    standin: Standin,
) -> None:
    rendered = standin.data_dir / "standin" / "rendered"
    rendered.mkdir(parents=True, exist_ok=True)
    (rendered / "helmchart-argocd.json").write_text(json.dumps({
        "chart": "argo-cd", "version": "10.1.1",
        "values_sha256": helmchart_values_sha256(ARGO_VALUES), "objects": ARGO_OBJECTS}))
    (rendered / "application-exporter.json").write_text(json.dumps({
        "sources_sha256": application_sources_sha256(CHILD), "objects": [EXPORTER]}))
    manifests = standin.data_dir / "server" / "manifests"

    # A chart version the test did not render: failed, as an install that fails.
    (manifests / "argocd.json").write_text(helmchart("9.9.9"))
    failed = wait_for(lambda: (get_json(standin, "helmchart", "argocd", "-n", "kube-system")
                               or {}).get("status"), 20)
    assert "not {'chart': 'argo-cd', 'version': '9.9.9'" in failed["conditions"][0]["message"]
    assert get_json(standin, "deployment", "argocd-server", "-n", "argocd") is None

    (manifests / "argocd.json").write_text(helmchart("10.1.1"))
    server = wait_for(lambda: get_json(standin, "deployment", "argocd-server", "-n", "argocd"), 20)
    records = standin.kubectl_json("get", "secrets", "-n", "argocd", "-l", "owner=helm")

    assert server["status"]["readyReplicas"] == 1
    assert server["metadata"]["annotations"][PLAYED_BY].startswith("the stand-in k3s")
    assert [s["metadata"]["name"] for s in records["items"]] == ["sh.helm.release.v1.argocd.v1"]
    crd = standin.kubectl_json("get", "crd", "applications.argoproj.io")
    assert "schema" not in crd["spec"]["versions"][0]

    # Argo CD runs: an Application is synced into its destination, its DaemonSet gets a pod.
    standin.run("kubectl", "apply", "-f", "-", stdin=json.dumps(CHILD))
    app = wait_for(lambda: (get_json(standin, "application", "exporter", "-n", "argocd")
                            or {}).get("status", {}).get("health"), 20)
    pods = wait_for(lambda: (get_json(standin, "pods", "-n", "metrics") or {}).get("items"), 20)
    assert app == {"status": "Healthy"}
    assert pods[0]["spec"]["containers"][0]["ports"] == [{"containerPort": 9100}]
    assert pods[0]["status"]["phase"] == "Running"

    # Sources the rendering is not of: out of sync, never Healthy.
    changed = json.loads(json.dumps(CHILD))
    changed["spec"]["source"]["path"] = "elsewhere"
    standin.run("kubectl", "apply", "-f", "-", stdin=json.dumps(changed))
    status = wait_for(lambda: (get_json(standin, "application", "exporter", "-n", "argocd")
                               or {}).get("status", {}).get("sync", {}).get("status")
                      == "OutOfSync", 20)
    assert status

    # Unmanaged: helm-controller leaves the release alone, records and all.
    standin.run("kubectl", "delete", "secret", "-n", "argocd", "-l", "owner=helm,name=argocd")
    (manifests / "argocd.json").write_text(helmchart("10.1.1", unmanaged=True))
    wait_for(lambda: "unmanaged" in json.dumps(
        get_json(standin, "helmchart", "argocd", "-n", "kube-system")), 20)
    time.sleep(2.5)
    left = standin.kubectl_json("get", "secrets", "-n", "argocd", "-l", "owner=helm")
    assert left["items"] == []
