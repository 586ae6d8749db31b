"""Stand-in for the k3s binary on test hosts; only for tests, never shipped.

No k3s binary can be fetched where the tests run. This program has k3s's command-line
shape and plays the parts socle relies on:

- ``k3s --version`` answers with the version it was built for (see ``k3s_build``);
- ``k3s server`` (run by the systemd unit) reads ``/etc/rancher/k3s/config.yaml``, keeps
  a WAL-mode SQLite datastore with kine's schema under ``<data-dir>/server/db/state.db``
  and renews leases in it like a live server, writes the token, ``tls/``, ``cred/`` (with
  ``encryption-config.json`` when ``secrets-encryption`` is on) and the admin kubeconfig
  (``write-kubeconfig-mode``), records this host's Node as Ready with its version, listens
  on the API port (6443) so that firewalls can be probed, applies the files of
  ``<data-dir>/server/manifests`` as k3s's deploy controller does, plays helm-controller,
  Argo CD and the workload controllers from renderings the test gives
  (``k3s_controllers``), and tells systemd it is ready (``sd_notify READY=1``);
- ``k3s kubectl`` needs that server to be reachable at the kubeconfig's address, then:
  ``get`` returns the objects recorded in the datastore plus the JSON files a test puts
  in ``<data-dir>/standin/objects/`` (``-o json`` or ``-o name``); ``apply -f FILE|DIR|-``
  records objects (an unchanged object is reported ``unchanged``; a namespaced object
  needs its namespace to exist, as on a real API server; a service-account token Secret
  gets its ``token`` and ``ca.crt`` as the token controller would fill them); ``delete``
  removes them by name or label selector (a Namespace takes its objects with it).

Objects live in kine's table as real k3s keeps them (one revision per change), so a
snapshot of the datastore and its restore carry them, as they would on a node.

``K3S_STANDIN_ROOT`` puts every path under another root folder (tests on this machine).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from tests.standins.k3s_datastore import connect, create_datastore
from tests.standins.kine_writer import LeaseWriter, insert_revision

DEV_VERSION = "v0.0.0+k3s0"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
OBJECT_PREFIX = "/registry/"
BASE_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Kinds that live outside namespaces; custom resources add theirs through their CRD.
CLUSTER_KINDS = {
    "Namespace", "Node", "PersistentVolume", "StorageClass", "ClusterRole",
    "ClusterRoleBinding", "CustomResourceDefinition", "IngressClass", "PriorityClass",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "CSIDriver", "RuntimeClass",
}  # fmt: skip
SHORT_NAMES = {
    "svc": "services", "po": "pods", "no": "nodes", "ns": "namespaces",
    "deploy": "deployments", "ds": "daemonsets", "sts": "statefulsets", "cm": "configmaps",
    "sa": "serviceaccounts", "ing": "ingresses", "pvc": "persistentvolumeclaims",
    "pv": "persistentvolumes", "crd": "customresourcedefinitions", "crds":
    "customresourcedefinitions", "ep": "endpoints", "sc": "storageclasses",
}  # fmt: skip
BUILTIN_RESOURCES = {
    "namespaces", "nodes", "pods", "services", "secrets", "configmaps", "serviceaccounts",
    "deployments", "daemonsets", "statefulsets", "replicasets", "jobs", "cronjobs",
    "ingresses", "ingressclasses", "roles", "rolebindings", "clusterroles",
    "clusterrolebindings", "persistentvolumeclaims", "persistentvolumes", "storageclasses",
    "customresourcedefinitions", "endpoints", "events", "leases", "networkpolicies",
    "helmcharts", "helmchartconfigs",
}  # fmt: skip
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
# How often the server looks at its manifests folder and runs its controllers (k3s
# watches the folder; a short period keeps the deploys' waits short).
SCAN_SECONDS = 2.0


class StandinError(Exception):
    """What kubectl prints on stderr before exiting 1."""


def plural(kind: str) -> str:
    """The resource name of a kind, as the API server names it (``Ingress`` -> ``ingresses``)."""
    word = kind.lower()
    if word == "endpoints":
        return word
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return word[:-1] + "ies"
    return word + "s"


def group_of(api_version: str) -> str:
    """The API group of an ``apiVersion`` (``""`` for the core group)."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def now_rfc3339() -> str:
    """The current time as Kubernetes writes timestamps."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Paths:
    """Where a k3s server keeps its files, under ``root`` (``/`` on a node)."""

    root: Path
    config_file: Path
    data_dir: Path
    kubeconfig: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, config_file: str | None = None, overrides: dict[str, Any] | None = None,
             paths_only: bool = False) -> Paths:
        """Read the configuration file (``/etc/rancher/k3s/config.yaml``) and flags.

        With ``paths_only`` (kubectl), only the top-level ``data-dir`` and
        ``write-kubeconfig`` are read, without YAML: importing PyYAML from the zip
        application would cost each kubectl call a fifth of a second.
        """
        root = Path(os.environ.get("K3S_STANDIN_ROOT", "/"))
        config = _under(root, config_file or "/etc/rancher/k3s/config.yaml")
        settings: dict[str, Any] = {}
        if config.exists() and paths_only:
            for line in config.read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("data-dir", "write-kubeconfig") and value.strip():
                    settings[key] = value.strip().strip("'\"")
        elif config.exists():
            import yaml

            loaded = yaml.safe_load(config.read_text()) or {}
            if not isinstance(loaded, dict):
                raise StandinError(f"{config}: not a mapping of settings")
            settings.update(loaded)
        settings.update(overrides or {})
        return cls(
            root=root,
            config_file=config,
            data_dir=_under(root, str(settings.get("data-dir", "/var/lib/rancher/k3s"))),
            kubeconfig=_under(
                root, str(settings.get("write-kubeconfig", "/etc/rancher/k3s/k3s.yaml"))
            ),
            settings=settings,
        )

    @property
    def server_dir(self) -> Path:
        return self.data_dir / "server"

    @property
    def datastore(self) -> Path:
        return self.server_dir / "db" / "state.db"

    @property
    def fixtures_dir(self) -> Path:
        return self.data_dir / "standin" / "objects"

    @property
    def manifests_dir(self) -> Path:
        return self.server_dir / "manifests"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "agent" / "images"


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


# ---------------------------------------------------------------------------------------
# The object store: kine's table, plus the test's fixture files


class Store:
    """Kubernetes objects kept as kine revisions in the datastore, plus fixture files."""

    def __init__(self, paths: Paths) -> None:
        if not paths.datastore.exists():
            raise StandinError(f"no datastore at {paths.datastore}: has k3s server run?")
        self.paths = paths
        self.conn = connect(paths.datastore)
        self._kinds: set[str] | None = None

    def close(self) -> None:
        self.conn.close()

    # reading -----------------------------------------------------------------------
    def _recorded(self, resource: str | None = None) -> dict[str, tuple[int, dict[str, Any]]]:
        prefix = OBJECT_PREFIX + (f"{resource}/" if resource else "")
        rows = self.conn.execute(
            "SELECT k.name, k.id, k.deleted, k.value FROM kine k JOIN (SELECT name, max(id) AS id"
            " FROM kine WHERE name >= ? AND name < ? GROUP BY name) m ON k.id = m.id",
            (prefix, prefix + "\uffff"),
        ).fetchall()
        found = {}
        for name, row_id, deleted, value in rows:
            if deleted or value is None:
                continue
            try:
                obj = json.loads(value)
            except (ValueError, UnicodeDecodeError):
                continue  # leases renewed by the writer are not whole objects
            if isinstance(obj, dict) and obj.get("kind") and obj.get("metadata", {}).get("name"):
                obj["metadata"]["resourceVersion"] = str(row_id)
                found[name] = (row_id, obj)
        return found

    def _fixture_objects(self) -> list[dict[str, Any]]:
        folder = self.paths.fixtures_dir
        if not folder.is_dir():
            return []
        return [obj for path in sorted(folder.glob("*.json"))
                for obj in expand(json.loads(path.read_text()))]

    def _fixtures(self) -> dict[str, dict[str, Any]]:
        kinds = self.cluster_kinds()
        return {self.key(obj, cluster_kinds=kinds): obj for obj in self._fixture_objects()}

    def all_objects(self, resource: str | None = None) -> dict[str, dict[str, Any]]:
        """Every object by key: the fixtures, overridden by what was recorded."""
        objects = {
            key: obj for key, obj in self._fixtures().items()
            if resource is None or key.startswith(f"{OBJECT_PREFIX}{resource}/")
        }  # fmt: skip
        objects.update({key: obj for key, (_, obj) in self._recorded(resource).items()})
        return objects

    def get(self, key: str) -> dict[str, Any] | None:
        """The object at ``key``: the recorded one, else a fixture's, else ``None``."""
        row = self.conn.execute(
            "SELECT id, deleted, value FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1", (key,)
        ).fetchone()
        if row is not None and not row[1] and row[2] is not None:
            obj: dict[str, Any] = json.loads(row[2])
            obj["metadata"]["resourceVersion"] = str(row[0])
            return obj
        return self._fixtures().get(key)

    def cluster_kinds(self) -> set[str]:
        """Built-in cluster-scoped kinds and those of cluster-scoped CRDs."""
        if self._kinds is None:
            self._kinds = self._cluster_kinds()
        return self._kinds

    def _cluster_kinds(self) -> set[str]:
        kinds = set(CLUSTER_KINDS)
        crds = [obj for _, obj in self._recorded("customresourcedefinitions").values()]
        crds += [obj for obj in self._fixture_objects()
                 if obj.get("kind") == "CustomResourceDefinition"]
        for crd in crds:
            spec = crd.get("spec", {})
            if spec.get("scope") == "Cluster":
                kinds.add(spec.get("names", {}).get("kind", ""))
        return kinds

    def resource_names(self) -> dict[str, str]:
        """Known resource names by every way kubectl may spell them."""
        resources = set(BUILTIN_RESOURCES)
        start = len(OBJECT_PREFIX) + 1
        rows = self.conn.execute(
            "SELECT DISTINCT substr(name, ?, instr(substr(name, ?), '/') - 1) FROM kine"
            " WHERE name >= ? AND name < ?",
            (start, start, OBJECT_PREFIX, OBJECT_PREFIX + "\uffff"),
        ).fetchall()
        resources.update(row[0] for row in rows if row[0])
        for key in self._fixtures():
            resources.add(key[len(OBJECT_PREFIX):].split("/", 1)[0])
        for obj in self.all_objects("customresourcedefinitions").values():
            names = obj.get("spec", {}).get("names", {})
            if names.get("plural"):
                resources.add(names["plural"])
        spelled = {resource: resource for resource in resources}
        for resource in resources:
            for word in {resource[:-1], resource[:-2], resource[:-3] + "y"}:
                if word and plural(word) == resource:
                    spelled.setdefault(word, resource)
        for short, resource in SHORT_NAMES.items():
            spelled.setdefault(short, resource)
        return spelled

    def resolve(self, word: str) -> str:
        """The resource ``word`` names (``svc``, ``service``, ``services.v1``, ...)."""
        name = word.split(".", 1)[0].lower()
        # The built-in names first: no datastore read.
        if name in BUILTIN_RESOURCES:
            return name
        if name in SHORT_NAMES:
            return SHORT_NAMES[name]
        resource = self.resource_names().get(name)
        if resource is None:
            raise StandinError(f'error: the server doesn\'t have a resource type "{word}"')
        return resource

    def key(self, obj: dict[str, Any], namespace: str | None = None,
            cluster_kinds: set[str] | None = None) -> str:
        """Where ``obj`` is kept: ``/registry/<resource>/<namespace or _>/<name>``."""
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        if not kind or not meta.get("name"):
            raise StandinError("error: an object needs kind and metadata.name")
        # the built-in kinds first: no datastore read
        if kind in CLUSTER_KINDS or kind in (cluster_kinds or self.cluster_kinds()):
            scope = "_"
        else:
            scope = meta.get("namespace") or namespace or "default"
        return f"{OBJECT_PREFIX}{plural(kind)}/{scope}/{meta['name']}"

    def namespace_exists(self, namespace: str) -> bool:
        return f"{OBJECT_PREFIX}namespaces/_/{namespace}" in self.all_objects("namespaces")

    # writing -----------------------------------------------------------------------
    def record(self, obj: dict[str, Any], key: str | None = None) -> int:
        """Write ``obj`` as the next revision of its key; return the revision."""
        key = key or self.key(obj)
        if key.startswith(f"{OBJECT_PREFIX}customresourcedefinitions/"):
            self._kinds = None
        previous = self._recorded_row(key)
        stored = copy.deepcopy(obj)
        stored.get("metadata", {}).pop("resourceVersion", None)
        value = json.dumps(stored, sort_keys=True).encode()
        return insert_revision(self.conn, key, value, previous[0] if previous else 0)

    def _recorded_row(self, key: str) -> tuple[int, int] | None:
        row = self.conn.execute(
            "SELECT id, deleted FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1", (key,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def apply(self, obj: dict[str, Any], namespace: str | None) -> str:
        """Record ``obj`` as ``kubectl apply`` would; return ``created``, ``configured``
        or ``unchanged``."""
        obj = copy.deepcopy(obj)
        kind = obj.get("kind")
        if not obj.get("apiVersion") or not kind:
            raise StandinError("error: error validating data: apiVersion or kind not set")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            raise StandinError(f"error: {kind} has no metadata.name")
        namespaced = kind not in self.cluster_kinds()
        if namespaced:
            meta["namespace"] = meta.get("namespace") or namespace or "default"
            if not self.namespace_exists(meta["namespace"]):
                raise StandinError(
                    f'Error from server (NotFound): namespaces "{meta["namespace"]}" not found'
                )
        else:
            meta.pop("namespace", None)
        obj.pop("status", None)
        applied = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        key = self.key(obj)
        existing = self.get(key)
        annotations = (existing or {}).get("metadata", {}).get("annotations", {})
        if existing is not None and annotations.get(LAST_APPLIED) == applied:
            return "unchanged"
        new = copy.deepcopy(obj)
        new_meta = new["metadata"]
        new_meta.setdefault("annotations", {})[LAST_APPLIED] = applied
        if existing is not None:
            old_meta = existing.get("metadata", {})
            new_meta["uid"] = old_meta.get("uid") or str(uuid.uuid4())
            new_meta["creationTimestamp"] = old_meta.get("creationTimestamp") or now_rfc3339()
            if "status" in existing:
                new["status"] = existing["status"]
            if kind == "Secret" and existing.get("type") == SERVICE_ACCOUNT_TOKEN:
                new["data"] = {**existing.get("data", {}), **new.get("data", {})}
        else:
            new_meta["uid"] = str(uuid.uuid4())
            new_meta["creationTimestamp"] = now_rfc3339()
        if kind == "Namespace":
            new["status"] = {"phase": "Active"}
        if kind == "Secret" and "stringData" in new:
            # As the API server: clear values go to data, base64-encoded.
            data = new.setdefault("data", {})
            for name, value in (new.pop("stringData") or {}).items():
                data[name] = base64.b64encode(str(value).encode()).decode()
        if kind == "Secret" and new.get("type") == SERVICE_ACCOUNT_TOKEN:
            self._fill_token(new)
        self.record(new, key)
        return "configured" if existing is not None else "created"

    def _fill_token(self, secret: dict[str, Any]) -> None:
        # What Kubernetes' token controller does for a service-account token Secret.
        data = secret.setdefault("data", {})
        if "token" not in data:
            token = "standin." + secrets.token_urlsafe(32)
            data["token"] = base64.b64encode(token.encode()).decode()
        ca = self.paths.server_dir / "tls" / "server-ca.crt"
        if ca.exists():
            data["ca.crt"] = base64.b64encode(ca.read_bytes()).decode()
        data["namespace"] = base64.b64encode(secret["metadata"]["namespace"].encode()).decode()

    def delete(self, key: str) -> bool:
        """Delete the recorded object at ``key`` (and a namespace's objects); False if absent."""
        row = self._recorded_row(key)
        if row is None or row[1]:
            if key in self._fixtures():
                raise StandinError(
                    f"stand-in k3s: {key} comes from the test's fixture files; remove the file"
                )
            return False
        insert_revision(self.conn, key, None, row[0], deleted=True)
        resource, scope, name = key[len(OBJECT_PREFIX):].split("/", 2)
        if resource in ("customresourcedefinitions",):
            self._kinds = None
        if resource == "namespaces":
            for other in list(self._recorded()):
                if other[len(OBJECT_PREFIX):].split("/", 2)[1] == name:
                    self.delete(other)
        return True


def expand(document: Any) -> Iterator[dict[str, Any]]:
    """The objects in one parsed document (``kind: List`` holds them in ``items``)."""
    if document is None:
        return
    if not isinstance(document, dict):
        raise StandinError(f"error: expected an object, got {type(document).__name__}")
    if document.get("kind", "").endswith("List") and "items" in document:
        for item in document["items"] or []:
            yield from expand(item)
    else:
        yield document


def read_manifests(sources: Iterable[str], stdin: Any = None) -> list[dict[str, Any]]:
    """Every object in the files, folders (``.yaml``, ``.yml``, ``.json``) or ``-``."""
    import yaml

    objects: list[dict[str, Any]] = []
    for source in sources:
        if source == "-":
            texts = [(stdin or sys.stdin).read()]
        else:
            path = Path(source)
            if path.is_dir():
                files = sorted(
                    p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json")
                )
            elif path.exists():
                files = [path]
            else:
                raise StandinError(f'error: the path "{source}" does not exist')
            texts = [p.read_text() for p in files]
        for text in texts:
            try:
                for document in yaml.safe_load_all(text):
                    objects.extend(expand(document))
            except yaml.YAMLError as error:
                raise StandinError(f"error: error parsing {source}: {error}") from None
    return objects


# ---------------------------------------------------------------------------------------
# k3s kubectl


@dataclass
class KubectlArgs:
    """The parts of a kubectl command line the stand-in understands."""

    verb: str = ""
    words: list[str] = field(default_factory=list)
    namespace: str | None = None
    all_namespaces: bool = False
    output: str | None = None
    filenames: list[str] = field(default_factory=list)
    selector: dict[str, str] = field(default_factory=dict)
    ignore_not_found: bool = False
    kubeconfig: str | None = None


_VALUE_FLAGS = {
    "-n": "namespace", "--namespace": "namespace", "-o": "output", "--output": "output",
    "-f": "filenames", "--filename": "filenames", "-l": "selector", "--selector": "selector",
    "--kubeconfig": "kubeconfig", "--field-manager": None, "--request-timeout": None,
    "--timeout": None, "--validate": None,
}  # fmt: skip
_BOOL_FLAGS = {
    "-A": "all_namespaces", "--all-namespaces": "all_namespaces",
    "--ignore-not-found": "ignore_not_found", "--server-side": None,
    "--force-conflicts": None, "-R": None, "--recursive": None, "--wait": None, "--now": None,
}  # fmt: skip


def parse_kubectl(argv: list[str]) -> KubectlArgs:
    """Parse ``k3s kubectl`` arguments; unknown flags are refused, never ignored."""
    args = KubectlArgs()
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        flag, has_value, value = word.partition("=")
        if word.startswith("-o") and len(word) > 2 and not word.startswith("--"):
            flag, has_value, value = "-o", "=", word[2:]
        if flag in _VALUE_FLAGS:
            if not has_value:
                if index >= len(argv):
                    raise StandinError(f"error: flag needs an argument: {flag}")
                value = argv[index]
                index += 1
            target = _VALUE_FLAGS[flag]
            if target == "filenames":
                args.filenames.append(value)
            elif target == "selector":
                for pair in value.split(","):
                    label, _, wanted = pair.partition("=")
                    args.selector[label] = wanted
            elif target is not None:
                setattr(args, target, value)
        elif flag in _BOOL_FLAGS:
            target = _BOOL_FLAGS[flag]
            if target is not None:
                setattr(args, target, value.lower() != "false" if has_value else True)
        elif word.startswith("-"):
            raise StandinError(f"stand-in k3s: kubectl flag {word} is not supported")
        elif not args.verb:
            args.verb = word
        else:
            args.words.append(word)
    return args


def check_api(paths: Paths, kubeconfig_flag: str | None) -> None:
    """Fail as kubectl does when the kubeconfig cannot be read or the API does not answer."""
    kubeconfig = (
        Path(kubeconfig_flag) if kubeconfig_flag
        else Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG")
        else paths.kubeconfig
    )  # fmt: skip
    try:
        text = kubeconfig.read_text()
    except OSError as error:
        raise StandinError(f"error: error loading config file \"{kubeconfig}\": {error}") from None
    found = re.search(r"\bserver\"?:\s*\"?https://([^\s\"/]+)", text)
    if found is None:
        raise StandinError(f"error: no server in {kubeconfig}")
    address = found.group(1)
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError:
        raise StandinError(
            f"The connection to the server {address} was refused - "
            "did you specify the right host or port?"
        ) from None


def _matches(obj: dict[str, Any], args: KubectlArgs, namespaced: bool) -> bool:
    meta = obj.get("metadata", {})
    if namespaced and not args.all_namespaces and meta.get("namespace") != (
        args.namespace or "default"
    ):
        return False
    labels = meta.get("labels") or {}
    return all(labels.get(label) == wanted for label, wanted in args.selector.items())


def _print(objects: list[dict[str, Any]], output: str | None, single: bool) -> None:
    if output == "json":
        document = objects[0] if single and len(objects) == 1 else {
            "apiVersion": "v1", "kind": "List", "items": objects, "metadata": {}
        }  # fmt: skip
        print(json.dumps(document, indent=4, sort_keys=True))
    elif output == "name":
        for obj in objects:
            print(f"{_type_name(obj)}/{obj['metadata']['name']}")
    elif output in (None, "wide"):
        if objects:
            print("NAMESPACE\tKIND\tNAME")
        for obj in objects:
            meta = obj["metadata"]
            print(f"{meta.get('namespace', '')}\t{obj['kind']}\t{meta['name']}")
    else:
        raise StandinError(f"stand-in k3s: output format {output!r} is not supported")


def _type_name(obj: dict[str, Any]) -> str:
    group = group_of(obj.get("apiVersion", ""))
    return obj["kind"].lower() + (f".{group}" if group else "")


def kubectl_get(store: Store, args: KubectlArgs) -> int:
    """``kubectl get`` by resource and names, or by file."""
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    if args.filenames:
        wanted = read_manifests(args.filenames)
        objects = store.all_objects()
        for obj in wanted:
            key = store.key(obj, args.namespace)
            if key in objects:
                found.append(objects[key])
            else:
                missing.append(f'{plural(obj["kind"])} "{obj["metadata"]["name"]}"')
        single = len(wanted) == 1
    else:
        if not args.words:
            raise StandinError("error: you must specify the type of resource to get")
        resources = [store.resolve(word) for word in args.words[0].split(",")]
        names = args.words[1:]
        cluster_resources = {plural(kind) for kind in store.cluster_kinds()}
        for resource in resources:
            namespaced = resource not in cluster_resources
            candidates = [
                obj for obj in store.all_objects(resource).values()
                if _matches(obj, args, namespaced)
            ]  # fmt: skip
            if names:
                by_name = {obj["metadata"]["name"]: obj for obj in candidates}
                for name in names:
                    if name in by_name:
                        found.append(by_name[name])
                    else:
                        missing.append(f'{resource} "{name}"')
            else:
                found.extend(sorted(candidates, key=lambda o: (
                    o["metadata"].get("namespace", ""), o["metadata"]["name"])))
        single = len(resources) == 1 and len(names) == 1
    if missing and not args.ignore_not_found:
        for what in missing:
            print(f"Error from server (NotFound): {what} not found", file=sys.stderr)
        if found:
            _print(found, args.output, single=False)
        return 1
    if found or args.output == "json" and not single:
        _print(found, args.output, single)
    return 0


def kubectl_apply(store: Store, args: KubectlArgs) -> int:
    """``kubectl apply -f``: record each object, in order; report every failure."""
    if not args.filenames:
        raise StandinError("error: must specify one of -f and -k")
    failed = False
    for obj in read_manifests(args.filenames):
        try:
            result = store.apply(obj, args.namespace)
        except StandinError as error:
            print(str(error), file=sys.stderr)
            failed = True
            continue
        print(f"{_type_name(obj)}/{obj['metadata']['name']} {result}")
    return 1 if failed else 0


def kubectl_delete(store: Store, args: KubectlArgs) -> int:
    """``kubectl delete`` by file or by resource and names."""
    targets: list[tuple[str, str]] = []
    if args.filenames:
        for obj in read_manifests(args.filenames):
            targets.append((store.key(obj, args.namespace), _type_name(obj)))
    elif args.selector and len(args.words) == 1:
        resource = store.resolve(args.words[0])
        namespaced = resource not in {plural(kind) for kind in store.cluster_kinds()}
        targets = [(key, resource) for key, obj in store.all_objects(resource).items()
                   if _matches(obj, args, namespaced)]
        if not targets:
            print("No resources found", file=sys.stderr)
            return 0
    else:
        if len(args.words) < 2:
            raise StandinError("error: resource(s) were provided, but no name was specified")
        resource = store.resolve(args.words[0])
        cluster_resources = {plural(kind) for kind in store.cluster_kinds()}
        scope = "_" if resource in cluster_resources else (args.namespace or "default")
        targets = [(f"{OBJECT_PREFIX}{resource}/{scope}/{name}", resource)
                   for name in args.words[1:]]
    failed = False
    for key, type_name in targets:
        name = key.rsplit("/", 1)[1]
        if store.delete(key):
            print(f'{type_name} "{name}" deleted')
        elif not args.ignore_not_found:
            resource = key[len(OBJECT_PREFIX):].split("/", 1)[0]
            print(f'Error from server (NotFound): {resource} "{name}" not found',
                  file=sys.stderr)
            failed = True
    return 1 if failed else 0


def kubectl(argv: list[str]) -> int:
    """``k3s kubectl ...``: get, apply and delete against the stand-in's datastore."""
    try:
        args = parse_kubectl(argv)
        verbs = {"get": kubectl_get, "apply": kubectl_apply, "delete": kubectl_delete}
        if args.verb not in verbs:
            raise StandinError(f"stand-in k3s: kubectl {args.verb or '(none)'} is not supported")
        paths = Paths.load(paths_only=True)
        check_api(paths, args.kubeconfig)
        store = Store(paths)
        try:
            return verbs[args.verb](store, args)
        finally:
            store.close()
    except StandinError as error:
        print(str(error), file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------
# k3s server


def _pem(label: str, body: str) -> bytes:
    encoded = base64.b64encode(body.encode()).decode()
    return f"-----BEGIN {label}-----\n{encoded}\n-----END {label}-----\n".encode()


def _write_once(path: Path, content: bytes, mode: int = 0o600) -> None:
    """Write ``path`` unless it exists: k3s keeps its token and certificates."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(content)
    path.chmod(mode)


def ensure_server_files(paths: Paths) -> None:
    """The token, certificates, credentials and kubeconfig a k3s server writes."""
    server = paths.server_dir
    _write_once(
        server / "token", f"K10{secrets.token_hex(32)}::server:{secrets.token_hex(16)}\n".encode()
    )
    node_token = server / "node-token"
    if not node_token.exists():
        node_token.symlink_to("token")
    tls = server / "tls"
    for name in ("server-ca", "client-ca", "request-header-ca", "client-admin",
                 "serving-kube-apiserver"):
        body = f"stand-in {name} {secrets.token_hex(8)}"
        _write_once(tls / f"{name}.crt", _pem("CERTIFICATE", body))
        _write_once(tls / f"{name}.key", _pem("EC PRIVATE KEY", secrets.token_hex(32)))
    _write_once(tls / "etcd" / "peer-ca.crt", _pem("CERTIFICATE", "stand-in peer CA"))
    cred = server / "cred"
    _write_once(cred / "passwd", f"{secrets.token_hex(16)},node,node,k3s:agent\n".encode())
    _write_once(cred / "ipsec.psk", f"{secrets.token_hex(32)}\n".encode())
    if paths.settings.get("secrets-encryption") is True:
        key = base64.b64encode(os.urandom(32)).decode()
        config = {
            "kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1",
            "resources": [{"resources": ["secrets"], "providers": [
                {"aescbc": {"keys": [{"name": "aescbckey", "secret": key}]}}, {"identity": {}}
            ]}],
        }  # fmt: skip
        _write_once(cred / "encryption-config.json", json.dumps(config).encode())
    for folder in (server / "manifests", paths.images_dir):
        folder.mkdir(parents=True, exist_ok=True)


def write_kubeconfig(paths: Paths, port: int) -> None:
    """The admin kubeconfig (``/etc/rancher/k3s/k3s.yaml``) with the configured mode."""
    tls = paths.server_dir / "tls"

    def data(name: str) -> str:
        return base64.b64encode((tls / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "default", "cluster": {
            "server": f"https://127.0.0.1:{port}",
            "certificate-authority-data": data("server-ca.crt")}}],
        "users": [{"name": "default", "user": {
            "client-certificate-data": data("client-admin.crt"),
            "client-key-data": data("client-admin.key")}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
        "current-context": "default",
    }  # fmt: skip
    mode = int(str(paths.settings.get("write-kubeconfig-mode", "0600")), 8)
    import yaml

    paths.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    temp = paths.kubeconfig.with_name(paths.kubeconfig.name + ".tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        yaml.safe_dump(config, out, sort_keys=False)
    os.chmod(temp, mode)
    os.replace(temp, paths.kubeconfig)


def node_object(version: str) -> dict[str, Any]:
    """This host as a Ready control-plane Node running ``version``."""
    stamp = now_rfc3339()
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": socket.gethostname(), "labels": {
            "kubernetes.io/hostname": socket.gethostname(),
            "node-role.kubernetes.io/control-plane": "true"}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}],
            "nodeInfo": {"kubeletVersion": version, "kubeProxyVersion": version},
        },
    }  # fmt: skip


def sd_notify(message: str) -> None:
    """Send ``message`` to systemd's notification socket, when run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def _listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(64)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return listener


def apply_manifests_dir(store: Store, seen: dict[Path, float]) -> None:
    """Apply the files of ``server/manifests`` that are new or changed, as k3s does; a file
    that failed is tried again at the next look (its failure said once)."""
    for path in sorted(store.paths.manifests_dir.glob("*")):
        if path.suffix not in (".yaml", ".yml", ".json") or path.name.startswith("."):
            continue
        mtime = path.stat().st_mtime
        if seen.get(path) == mtime:
            continue
        try:
            for obj in read_manifests([str(path)]):
                store.apply(obj, "kube-system")
            seen[path] = mtime
            print(f"applied {path.name}", flush=True)
        except StandinError as error:
            if seen.get(path) != -mtime:
                print(f"failed to apply {path.name}: {error}", flush=True)
            # negative: failed at this time, to be tried again
            seen[path] = -mtime


def run_controllers(store: Store) -> None:
    """One pass of the stand-in's controllers (tests/standins/k3s_controllers.py)."""
    from tests.standins.k3s_controllers import reconcile

    try:
        for line in reconcile(store):
            print(line, flush=True)
    except (StandinError, ValueError, KeyError, TypeError) as error:
        print(f"stand-in controllers failed: {type(error).__name__}: {error}", flush=True)


def parse_server_flags(argv: list[str]) -> tuple[str | None, dict[str, Any]]:
    """The ``--config`` file and the other ``--flag value`` settings of ``k3s server``."""
    config_file = None
    settings: dict[str, Any] = {}
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if not word.startswith("--"):
            raise StandinError(f"stand-in k3s: unexpected argument {word!r}")
        flag, has_value, value = word[2:].partition("=")
        if not has_value:
            if index < len(argv) and not argv[index].startswith("--"):
                value = argv[index]
                index += 1
            else:
                settings[flag] = True
                continue
        if flag == "config":
            config_file = value
        else:
            settings[flag] = value
    return config_file, settings


def server(argv: list[str], version: str) -> int:
    """``k3s server``: keep the datastore and the API port until SIGTERM."""
    config_file, flags = parse_server_flags(argv)
    paths = Paths.load(config_file, flags)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if paths.settings.get("cluster-init") or paths.settings.get("datastore-endpoint"):
        raise StandinError("stand-in k3s: only the SQLite datastore is played")
    paths.datastore.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    create_datastore(paths.datastore)
    ensure_server_files(paths)
    port = int(paths.settings.get("https-listen-port", 6443))
    write_kubeconfig(paths, port)
    for image in sorted(paths.images_dir.glob("*")):
        print(f"importing images from {image}", flush=True)
    store = Store(paths)
    for name in BASE_NAMESPACES:
        if not store.namespace_exists(name):
            store.record({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                          "status": {"phase": "Active"}})
    store.record(node_object(version))
    seen: dict[Path, float] = {}
    apply_manifests_dir(store, seen)
    run_controllers(store)
    listener = _listen(port)
    writer = LeaseWriter(connect(paths.datastore), keys=10)
    print(f"stand-in k3s {version}: datastore {paths.datastore}, API on :{port}", flush=True)
    sd_notify("READY=1")
    last_scan = time.monotonic()
    while not stopping.wait(1.0):
        try:
            writer.write_one()
        except sqlite3.Error as error:
            print(f"lease renewal failed: {error}", flush=True)
        if time.monotonic() - last_scan >= SCAN_SECONDS:
            apply_manifests_dir(store, seen)
            run_controllers(store)
            last_scan = time.monotonic()
    sd_notify("STOPPING=1")
    listener.close()
    writer.conn.close()
    store.close()
    return 0


def main(argv: list[str] | None = None, version: str = DEV_VERSION) -> int:
    """Run the stand-in as ``k3s ARGS``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("--version", "-v", "version"):
        print(f"k3s version {version} (stand-in)")
        print("go version go1.24.0 (stand-in: Python)")
        return 0
    try:
        if args[0] == "server":
            return server(args[1:], version)
        if args[0] == "kubectl":
            return kubectl(args[1:])
        raise StandinError(f"stand-in k3s: the {args[0]!r} command is not played")
    except StandinError as error:
        print(str(error), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
