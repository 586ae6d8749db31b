"""Read k3s on a node: its binary and the one kept for a rollback, its unit, what the
kernel offers it, the node's readiness, what the cluster exposes, and socle's objects.

The cluster facts ask ``k3s kubectl`` on the node and boil the answer down there (with
the node's python3), so no Secret value or pod environment ever leaves the node.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, TypedDict

from pyinfra.api import FactBase
from typing_extensions import override

from facts.kube_objects import LISTING_PREAMBLE
from socle.exposure import exposures_of
from socle.k3s_plan import (
    IMAGES_DIR,
    INSTALL_PATH,
    PREVIOUS_BINARY,
    ROLLBACK_RECORD,
)

_K3S = shlex.quote(INSTALL_PATH)


class K3sInstallState(TypedDict):
    """What the node holds of k3s's binaries."""

    machine: str
    version: str | None
    sha256: str | None
    previous_version: str | None
    previous_sha256: str | None
    rollback: dict[str, Any] | None
    agent: bool


def _version_of(binary: str) -> str:
    quoted = shlex.quote(binary)
    return f"$({quoted} --version 2>/dev/null | head -n 1 | cut -d ' ' -f 3)"


def _sha256_of(path: str) -> str:
    return f"$(sha256sum < {path} | cut -d ' ' -f 1)"


class K3sInstall(FactBase[K3sInstallState]):
    """
    Returns the installed k3s (version and sha256 of ``/usr/local/bin/k3s``), the binary
    kept for a rollback and the rollback record, and whether socle's agent is installed.

    .. code:: python

        {"machine": "x86_64", "version": "v1.33.2+k3s1", "sha256": "9f2c...",
         "previous_version": None, "previous_sha256": None, "rollback": None,
         "agent": True}
    """

    @override
    @staticmethod
    def default() -> K3sInstallState:
        return {
            "machine": "", "version": None, "sha256": None, "previous_version": None,
            "previous_sha256": None, "rollback": None, "agent": False,
        }  # fmt: skip

    @override
    def command(self) -> str:
        previous = shlex.quote(PREVIOUS_BINARY)
        record = shlex.quote(ROLLBACK_RECORD)
        return "; ".join((
            'echo "machine $(uname -m)"',
            f'if [ -x {_K3S} ]; then echo "version {_version_of(INSTALL_PATH)}"; '
            f'echo "sha256 {_sha256_of(_K3S)}"; fi',
            f'if [ -x {previous} ]; then echo "previous_version {_version_of(PREVIOUS_BINARY)}"; '
            f'echo "previous_sha256 {_sha256_of(previous)}"; fi',
            f'if [ -f {record} ]; then echo "rollback $(tr -d "\\n" < {record})"; fi',
            'if [ -x /usr/local/bin/socle-agent ]; then echo "agent yes"; fi',
            "true",
        ))  # fmt: skip

    @override
    def process(self, output: list[str]) -> K3sInstallState:
        state = self.default()
        for line in output:
            key, _, value = line.strip().partition(" ")
            value = value.strip()
            optional = ("version", "sha256", "previous_version", "previous_sha256")
            if key == "machine" or (key in optional and value):
                state[key] = value  # type: ignore[literal-required]
            elif key == "rollback" and value:
                try:
                    record = json.loads(value)
                except ValueError:
                    record = {"unreadable": value[:200]}
                state["rollback"] = record if isinstance(record, dict) else {"unreadable": value}
            elif key == "agent":
                state["agent"] = True
        return state


class K3sUnitState(TypedDict):
    """The k3s unit's state, the air-gap images in place, the kernel's features."""

    active: str
    enabled: str
    images: dict[str, str]
    kernel_features: list[str]


class K3sUnit(FactBase[K3sUnitState]):
    """
    Returns the k3s unit's ``systemctl is-active`` and ``is-enabled`` answers, the air-gap
    images archives in place (file name to sha256) and which of the kernel features k3s
    needs are there (``overlay``, ``br_netfilter``).

    .. code:: python

        {"active": "active", "enabled": "enabled",
         "images": {"k3s-airgap-images-amd64.tar.zst": "41b2..."},
         "kernel_features": ["overlay", "br_netfilter"]}
    """

    @override
    @staticmethod
    def default() -> K3sUnitState:
        return {"active": "", "enabled": "", "images": {}, "kernel_features": []}

    @override
    def command(self) -> str:
        images = shlex.quote(IMAGES_DIR)
        return "; ".join((
            'echo "active $(systemctl is-active k3s 2>/dev/null)"',
            'echo "enabled $(systemctl is-enabled k3s 2>/dev/null)"',
            f"for f in {images}/k3s-airgap-images-*; do "
            'if [ -f "$f" ]; then echo "images ${f##*/} $(sha256sum < "$f" | cut -d " " -f 1)"; '
            "fi; done",
            'if grep -qw overlay /proc/filesystems; then echo "feature overlay"; fi',
            'if [ -d /proc/sys/net/bridge ]; then echo "feature br_netfilter"; fi',
            "true",
        ))  # fmt: skip

    @override
    def process(self, output: list[str]) -> K3sUnitState:
        state = self.default()
        for line in output:
            key, _, value = line.strip().partition(" ")
            value = value.strip()
            if key in ("active", "enabled"):
                state[key] = value  # type: ignore[literal-required]
            elif key == "images":
                name, _, digest = value.partition(" ")
                state["images"][name] = digest
            elif key == "feature":
                state["kernel_features"].append(value)
        return state


# Boils `kubectl get nodes -o json` down to one line per node; errors to one line.
_NODES_PROGRAM = LISTING_PREAMBLE + r"""
for node in items:
    status = node.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions", []))
    version = status.get("nodeInfo", {}).get("kubeletVersion", "?")
    print("node", node["metadata"]["name"], "Ready" if ready else "NotReady", version)
"""


class K3sNodeState(TypedDict):
    """Whether the API answered, and each node's name, readiness and version."""

    api: bool
    error: str | None
    nodes: list[dict[str, Any]]


class K3sNodes(FactBase[K3sNodeState]):
    """
    Returns the cluster's nodes as ``k3s kubectl get nodes`` sees them, or why it could
    not (k3s absent, the API not answering).

    .. code:: python

        {"api": True, "error": None,
         "nodes": [{"name": "vps", "ready": True, "version": "v1.33.2+k3s1"}]}
    """

    @override
    @staticmethod
    def default() -> K3sNodeState:
        return {"api": False, "error": "no answer", "nodes": []}

    @override
    def command(self) -> str:
        return (
            f"if [ -x {_K3S} ]; then {_K3S} kubectl get nodes -o json --request-timeout=20s "
            f"2>&1 | python3 -c {shlex.quote(_NODES_PROGRAM)}; "
            "else echo 'error k3s is not installed'; fi"
        )

    @override
    def process(self, output: list[str]) -> K3sNodeState:
        state: K3sNodeState = {"api": True, "error": None, "nodes": []}
        for line in output:
            words = line.split()
            if words and words[0] == "error":
                return {"api": False, "error": " ".join(words[1:]), "nodes": []}
            if len(words) == 4 and words[0] == "node":
                state["nodes"].append(
                    {"name": words[1], "ready": words[2] == "Ready", "version": words[3]}
                )
        return state


# Keeps only what the exposure check reads: never a pod's environment or a Secret.
_EXPOSURE_PROGRAM = r"""
import json, sys
raw = sys.stdin.read()
try:
    items = json.loads(raw)["items"]
except (ValueError, KeyError):
    print(json.dumps({"error": " ".join(raw.split())[-300:]}))
    sys.exit(0)
def ports(container):
    return [{k: p[k] for k in ("containerPort", "hostPort") if k in p}
            for p in container.get("ports") or []]
kept = []
for obj in items:
    meta, spec = obj.get("metadata", {}), obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    slim = {"kind": obj.get("kind"), "status": {"phase": phase},
            "metadata": {k: meta.get(k) for k in ("name", "namespace", "labels")}}
    if obj.get("kind") == "Service":
        slim["spec"] = {"type": spec.get("type"), "externalIPs": spec.get("externalIPs"),
                        "ports": [{k: p[k] for k in ("port", "nodePort") if k in p}
                                  for p in spec.get("ports") or []]}
    else:
        slim["spec"] = {"hostNetwork": spec.get("hostNetwork", False),
                        "containers": [{"ports": ports(c)} for c in spec.get("containers") or []],
                        "initContainers": [{"ports": ports(c)}
                                           for c in spec.get("initContainers") or []]}
    kept.append(slim)
print(json.dumps({"items": kept}))
"""


class K3sExposureState(TypedDict):
    """Why the cluster could not be asked (or ``None``), and what it exposes."""

    error: str | None
    exposures: list[dict[str, Any]]


class K3sExposure(FactBase[K3sExposureState]):
    """
    Returns every way the cluster opens a port on the node (Services of type
    LoadBalancer or NodePort, with externalIPs; pods with hostPort or hostNetwork), as
    ``socle.exposure.Exposure`` values in plain data (``Exposure.from_dict`` reads
    them), or the reason the cluster could not be asked.

    .. code:: python

        {"error": None,
         "exposures": [{"kind": "Service", "namespace": "kube-system", "name": "traefik",
                        "how": "LoadBalancer", "ports": [80, 443], "carries": None}]}
    """

    @override
    @staticmethod
    def default() -> K3sExposureState:
        return {"error": "no answer from the cluster", "exposures": []}

    @override
    def command(self) -> str:
        return (
            f"if [ -x {_K3S} ]; then {_K3S} kubectl get services,pods -A -o json "
            f"--request-timeout=20s 2>&1 | python3 -c {shlex.quote(_EXPOSURE_PROGRAM)}; "
            "else echo '{\"error\": \"k3s is not installed\"}'; fi"
        )

    @override
    def process(self, output: list[str]) -> K3sExposureState:
        answer = json.loads("".join(output))
        if "error" in answer:
            return {"error": str(answer["error"]), "exposures": []}
        return {"error": None,
                "exposures": [e.as_dict() for e in exposures_of(answer["items"])]}


_OBJECTS_PROGRAM = r"""
import json, sys
raw = sys.stdin.read()
try:
    document = json.loads(raw) if raw.strip() else {"items": []}
except ValueError:
    print("error " + " ".join(raw.split())[-300:])
    sys.exit(0)
items = document["items"] if "items" in document else [document]
print("listed")  # a line even for none: a fact without output reads as no answer
for obj in items:
    meta = obj.get("metadata", {})
    annotations = meta.get("annotations") or {}
    digest = ("argocd" if "argocd.argoproj.io/tracking-id" in annotations
              else annotations.get("socle/manifest-sha256", "-"))
    print("object", obj["kind"], meta.get("namespace") or "-", meta["name"], digest)
"""


class KubeObjectDigests(FactBase["dict[str, str] | None"]):
    """
    Returns, for each of the given objects that exists in the cluster, the digest socle
    annotated it with (``-`` when none, ``argocd`` when Argo CD tracks it), keyed
    ``Kind/namespace/name`` (``-`` for no namespace); ``None`` when the cluster could not
    be asked.

    + objects_json: a JSON list of ``{"apiVersion", "kind", "metadata": {"name", "namespace"}}``

    .. code:: python

        {"Namespace/-/socle-system": "5d0e...", "ServiceAccount/socle-system/socle-agent": "-"}
    """

    @override
    @staticmethod
    def default() -> dict[str, str] | None:
        return None

    @override
    def command(self, objects_json: str) -> str:
        listing = json.dumps({"apiVersion": "v1", "kind": "List",
                              "items": json.loads(objects_json)})
        return (
            f"if [ -x {_K3S} ]; then printf '%s' {shlex.quote(listing)} | {_K3S} kubectl get "
            "-f - -o json --ignore-not-found --request-timeout=20s 2>&1 | python3 -c "
            f"{shlex.quote(_OBJECTS_PROGRAM)}; else echo 'error k3s is not installed'; fi"
        )

    @override
    def process(self, output: list[str]) -> dict[str, str] | None:
        found: dict[str, str] = {}
        for line in output:
            words = line.split()
            if words and words[0] == "error":
                return None
            if len(words) == 5 and words[0] == "object":
                found["/".join(words[1:4])] = words[4]
        return found


# Builds the agent's kubeconfig from its ServiceAccount token on the node itself: the
# token never leaves the node, never enters a command line. `check` only compares.
AGENT_KUBECONFIG_PROGRAM = r"""
import base64, hashlib, json, os, subprocess, sys
mode, path, namespace, secret, server, k3s = sys.argv[1:7]
done = subprocess.run([k3s, "kubectl", "get", "secret", secret, "-n", namespace, "-o", "json",
                       "--request-timeout=20s"], capture_output=True, text=True, timeout=60)
def unavailable(why):
    print("unavailable " + " ".join(why.split())[-300:])
    sys.exit(0 if mode == "check" else 1)
if done.returncode != 0:
    unavailable(done.stderr or done.stdout)
data = json.loads(done.stdout).get("data") or {}
if not data.get("token") or not data.get("ca.crt"):
    unavailable(f"the Secret {namespace}/{secret} holds no token yet")
token = base64.b64decode(data["token"]).decode()
config = {
    "apiVersion": "v1", "kind": "Config", "current-context": "socle-agent",
    "clusters": [{"name": "local", "cluster": {"server": server,
                  "certificate-authority-data": data["ca.crt"]}}],
    "users": [{"name": "socle-agent", "user": {"token": token}}],
    "contexts": [{"name": "socle-agent", "context": {"cluster": "local",
                  "user": "socle-agent"}}],
}
text = ("# Managed by socle (deploys/k3s.py): the agent's ServiceAccount token.\n"
        + json.dumps(config, indent=2) + "\n").encode()
try:
    st = os.lstat(path)
    with open(path, "rb") as handle:
        current = handle.read()
    ok = current == text and st.st_uid == 0 and st.st_mode & 0o7777 == 0o600
except FileNotFoundError:
    ok = False
if ok or mode == "check":
    print("current" if ok else "stale")
    sys.exit(0)
os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
temp = path + ".socle-new"
fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
os.fchmod(fd, 0o600)
os.fchown(fd, 0, 0)
os.write(fd, text)
os.fsync(fd)
os.close(fd)
os.replace(temp, path)
print("written " + hashlib.sha256(text).hexdigest()[:12])
"""


class AgentKubeconfig(FactBase[str]):
    """
    Returns whether the agent's kubeconfig holds the current token of its ServiceAccount
    (``current``), not (``stale``), or why the token cannot be read (``unavailable ...``).
    Only that word leaves the node.

    + path: the kubeconfig, e.g. ``/etc/socle/agent-kubeconfig``
    + namespace, secret: the token Secret, e.g. ``socle-system``, ``socle-agent-token``
    + server: the API address the agent uses, e.g. ``https://127.0.0.1:6443``
    """

    @override
    @staticmethod
    def default() -> str:
        return "unavailable no answer"

    @override
    def command(self, path: str, namespace: str, secret: str, server: str) -> str:
        args = " ".join(shlex.quote(a) for a in ("check", path, namespace, secret, server,
                                                 INSTALL_PATH))
        return f"python3 -c {shlex.quote(AGENT_KUBECONFIG_PROGRAM)} {args}"

    @override
    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else self.default()
