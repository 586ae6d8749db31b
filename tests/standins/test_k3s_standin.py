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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.standins.k3s_build import build_binary, make_release, sha256_of, write_versions_file

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
