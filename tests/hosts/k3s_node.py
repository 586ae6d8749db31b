"""A test host made into a k3s node with the stand-in k3s: its host data, a release served
over HTTPS as the pinned release URL would be, the stand-in's fixture objects, kubectl.

Example::

    server = ReleaseServer.start(outsider, [release], workdir)
    server.trust_on(node)
    versions = write_versions_file(workdir / "v.toml", release, release_url=server.url)
    data = k3s_node_data(admin_public_key, versions)
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from socle.versions import load_versions
from tests.harness.hosts import TestHost
from tests.hosts.probes import wait_until
from tests.standins.k3s_build import StandinRelease, make_release, write_versions_file

K3S = "/usr/local/bin/k3s"
FIXTURES = "/var/lib/rancher/k3s/standin/objects"
RELEASE_ROOT = "/srv/k3s-releases"
RELEASE_PORT = 8443

# The agent of a k3s node without PostgreSQL: it snapshots k3s's datastore.
K3S_AGENT_SETTINGS: dict[str, Any] = {
    "schedule": {"k3s_snapshot": "every 6 hours", "k3s_drill": "weekly on sunday at 05:00",
                 "disk_check": "every 15 minutes", "prune": "daily at 06:00"},
    "drill": {"rto_seconds": {"k3s": 600}, "rpo_seconds": {"k3s": 25200}},
    "metrics": {"listen": "10.8.0.1", "port": 9464},
    "mail": {"enabled": False, "host": "127.0.0.1", "from": "socle-agent@test-node.invalid",
             "to": ["ops@test-node.invalid"]},
}  # fmt: skip

HTTPS_PROGRAM = r"""
import http.server, os, ssl, sys
root, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.chdir(root)
server = http.server.ThreadingHTTPServer(("0.0.0.0", port), http.server.SimpleHTTPRequestHandler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def k3s_node_data(admin_public_key: str, versions_file: Path, **extra: Any) -> dict[str, Any]:
    """Host data of a k3s node: one admin peer, the test's versions file, the agent."""
    return {
        "wireguard_peers": [
            {"name": "admin", "public_key": admin_public_key, "address": "10.8.0.2"}
        ],
        "socle_versions_file": str(versions_file),
        "agent_settings": K3S_AGENT_SETTINGS,
        "agent_secrets": [],
        **extra,
    }


def standin_k3s_data(folder: Path) -> dict[str, str]:
    """Host data installing the stand-in k3s at the pinned version from an air-gap folder:
    the release laid out under ``folder`` and a versions file pinning its checksums."""
    release = make_release(load_versions().k3s.version, folder / "k3s-release")
    versions = write_versions_file(folder / "k3s-versions.toml", release)
    return {"socle_versions_file": str(versions), "k3s_airgap_dir": str(release.airgap_dir)}


def put_files(host: TestHost, folder: str, files: dict[str, bytes], mode: int = 0o644) -> None:
    """Write ``files`` (name to content) into ``folder`` on ``host`` (created if absent)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            tar.addfile(info, io.BytesIO(content))
    host.exec(["mkdir", "-p", folder])
    host.container.put_archive(folder, buffer.getvalue())


def place_objects(node: TestHost, name: str, objects: list[dict[str, Any]]) -> None:
    """Make the stand-in's ``kubectl get`` list ``objects`` (as the test's fixture ``name``)."""
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    put_files(node, FIXTURES, {f"{name}.json": document.encode()})


def remove_objects(node: TestHost, name: str) -> None:
    """Remove the fixture ``name`` placed by ``place_objects``."""
    node.exec(["rm", "-f", f"{FIXTURES}/{name}.json"])


def kubectl(node: TestHost, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``k3s kubectl ARGS`` as root on the node."""
    return node.exec([K3S, "kubectl", *args], check=check)


def apply(node: TestHost, *objects: dict[str, Any]) -> None:
    """``k3s kubectl apply`` of ``objects`` on the node (as root, from a file)."""
    listing = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    put_files(node, "/root/objects", {"objects.json": json.dumps(listing).encode()})
    kubectl(node, "apply", "-f", "/root/objects/objects.json")


def config_map(name: str) -> dict[str, Any]:
    """A ConfigMap ``name`` in ``default``, a marker object for datastore round trips."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}, "data": {"written": name}}


def kubectl_json(node: TestHost, *args: str) -> dict[str, Any]:
    """``k3s kubectl ARGS -o json``, parsed."""
    result: dict[str, Any] = json.loads(kubectl(node, *args, "-o", "json").stdout)
    return result


@dataclass
class ReleaseServer:
    """Releases served over HTTPS from a test host, as ``<url>/<version>/<file>``."""

    host: TestHost
    ca_certificate: bytes

    @property
    def url(self) -> str:
        return f"https://{self.host.address}:{RELEASE_PORT}"

    @classmethod
    def start(cls, host: TestHost, releases: dict[str, StandinRelease], workdir: Path
              ) -> ReleaseServer:
        """Serve each release under the folder name given (a version, or another name),
        with a certificate for the host's address from a CA made for the test."""
        keys = workdir / "release-tls"
        keys.mkdir()
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=socle test CA", "-keyout", str(keys / "ca.key"),
                 "-out", str(keys / "ca.crt"))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host.address}",
                 "-keyout", str(keys / "server.key"), "-out", str(keys / "server.csr"))
        (keys / "san.cnf").write_text(f"subjectAltName=IP:{host.address}\n")
        _openssl("x509", "-req", "-in", str(keys / "server.csr"), "-CA", str(keys / "ca.crt"),
                 "-CAkey", str(keys / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", str(keys / "san.cnf"), "-out", str(keys / "server.crt"))
        put_files(host, "/etc/k3s-release-tls", {
            "server.crt": (keys / "server.crt").read_bytes(),
            "server.key": (keys / "server.key").read_bytes(),
        }, mode=0o600)  # fmt: skip
        for folder, release in releases.items():
            files = {p.name: p.read_bytes() for p in release.airgap_dir.iterdir()}
            put_files(host, f"{RELEASE_ROOT}/{folder}", files)
        host.exec_background(
            f"python3 -c {shlex.quote(HTTPS_PROGRAM)} {RELEASE_ROOT} {RELEASE_PORT} "
            "/etc/k3s-release-tls/server.crt /etc/k3s-release-tls/server.key"
        )
        wait_until(lambda: bool(host.exec(["ss", "-Hltn", f"sport = :{RELEASE_PORT}"])
                                .stdout.strip()), "the release server")
        return cls(host, (keys / "ca.crt").read_bytes())

    def trust_on(self, node: TestHost) -> None:
        """Make ``node`` trust the test CA, as it trusts the real release host's."""
        put_files(node, "/usr/local/share/ca-certificates", {
            "socle-test-release-ca.crt": self.ca_certificate})
        node.exec("update-ca-certificates >/dev/null")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], capture_output=True, check=True, timeout=60)
