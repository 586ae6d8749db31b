"""socle's rules for rendered Kubernetes objects, and their offline validation.

Each check takes rendered objects and returns the problems it found, one line each,
naming the object; an empty list means the rule holds. The tests assert the rules on the
real render, and that each check catches a broken object (so a pass means something).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

Object = dict[str, Any]

# A 4 GB node: what its pods may request once the system, k3s's server process, the
# node agent and k3s's bundled pods (CoreDNS 70Mi/100m and metrics-server 70Mi/100m
# request; Traefik, ServiceLB and local-path none) have theirs.
NODE_MEMORY = 4 * 1024**3
NODE_CPU = Decimal(2)
RESERVED_MEMORY = 1024**3
RESERVED_CPU = Decimal("0.5")
K3S_BUNDLED_MEMORY = 140 * 1024**2
K3S_BUNDLED_CPU = Decimal("0.2")
POD_BUDGET_MEMORY = NODE_MEMORY - RESERVED_MEMORY - K3S_BUNDLED_MEMORY
POD_BUDGET_CPU = NODE_CPU - RESERVED_CPU - K3S_BUNDLED_CPU

# The only public Services: Traefik's (k3s's ingress, ServiceLB on 80 and 443).
PUBLIC_SERVICE_ALLOWLIST = frozenset({("kube-system", "traefik")})
# Components k3s runs inside its one process: nothing of them can be scraped apart.
K3S_ABSENT_JOBS = ("kube-scheduler", "kube-controller-manager", "kube-proxy", "kube-etcd")
ALWAYS_FIRING_ON_ONE_NODE = ("KubeCPUOvercommit", "KubeMemoryOvercommit")

_EXACT_TAG = re.compile(r"^v?\d+\.\d+\.\d+([.+_-][0-9A-Za-z.+_-]*)?$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6),
    "G": Decimal(10**9), "T": Decimal(10**12), "Ki": Decimal(2**10), "Mi": Decimal(2**20),
    "Gi": Decimal(2**30), "Ti": Decimal(2**40),
}  # fmt: skip
_POD_OWNERS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


def name_of(obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` of an object, for messages."""
    meta = obj.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def quantity(text: str | int | float) -> Decimal:
    """A Kubernetes quantity (``100m``, ``128Mi``, ``1``) as a number."""
    match = _QUANTITY.match(str(text))
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"{text!r} is not a quantity")
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]


@dataclass(frozen=True)
class Container:
    """One container of a workload, where its resources and image come from."""

    owner: str
    name: str
    image: str
    resources: Mapping[str, Any]
    init: bool
    replicas: int
    running: bool  # counts toward the node's steady load (a Job's pod does not)


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod template's spec of a workload object, if it is one."""
    if obj.get("kind") in _POD_OWNERS:
        return obj.get("spec", {}).get("template", {}).get("spec")
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def containers(objects: Iterable[Object]) -> Iterator[Container]:
    """Every container the objects run, including those the Prometheus operator adds.

    The operator makes Prometheus's and Alertmanager's pods from their custom resources:
    the main container's resources are the resource's ``spec.resources``, its
    config-reloader sidecar's are the operator's ``--config-reloader-*`` arguments.
    """
    objects = list(objects)
    reloader = _config_reloader(objects)
    for obj in objects:
        kind = obj.get("kind")
        spec = pod_spec(obj)
        if spec is not None:
            replicas = (
                1
                if kind in ("DaemonSet", "Job", "CronJob")
                else int(obj["spec"].get("replicas", 1))
            )
            running = kind not in ("Job", "CronJob")
            for init, key in ((True, "initContainers"), (False, "containers")):
                for c in spec.get(key) or []:
                    yield Container(
                        name_of(obj),
                        c["name"],
                        c.get("image", ""),
                        c.get("resources") or {},
                        init,
                        replicas,
                        running,
                    )
        elif kind in ("Prometheus", "Alertmanager") and obj.get("apiVersion", "").startswith(
            "monitoring.coreos.com/"
        ):
            replicas = int(obj["spec"].get("replicas", 1))
            yield Container(
                name_of(obj),
                kind.lower(),
                obj["spec"].get("image", ""),
                obj["spec"].get("resources") or {},
                False,
                replicas,
                True,
            )
            if reloader is not None:
                image, resources = reloader
                yield Container(
                    name_of(obj), "config-reloader", image, resources, False, replicas, True
                )
                yield Container(
                    name_of(obj), "init-config-reloader", image, resources, True, replicas, True
                )


def _config_reloader(objects: Iterable[Object]) -> tuple[str, Mapping[str, Any]] | None:
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for c in spec.get("containers", []):
            args = dict(
                arg[2:].split("=", 1) for arg in c.get("args", [])
                if arg.startswith("--") and "=" in arg
            )  # fmt: skip
            if "prometheus-config-reloader" in args:
                resources: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
                for key, value in args.items():
                    match = re.fullmatch(r"config-reloader-(cpu|memory)-(request|limit)", key)
                    if match and value not in ("", "0"):
                        resources[match.group(2) + "s"][match.group(1)] = value
                return args["prometheus-config-reloader"], resources
    return None


def missing_resources(objects: Iterable[Object]) -> list[str]:
    """Containers without both requests and limits of CPU and memory."""
    problems = []
    for c in containers(objects):
        for part in ("requests", "limits"):
            got = c.resources.get(part) or {}
            for resource in ("cpu", "memory"):
                if resource not in got:
                    problems.append(f"{c.owner}: container {c.name} has no {part}.{resource}")
    return problems


def requested(objects: Iterable[Object]) -> tuple[Decimal, Decimal]:
    """The CPU (cores) and memory (bytes) the running pods request, summed over replicas.

    A pod's request is its containers' sum, or its largest init container's when larger
    (init containers run one at a time, before the others). Jobs are not counted: they
    finish, and the budget's margin covers one at a time.
    """
    pods: dict[str, dict[str, Any]] = {}
    for c in containers(objects):
        if not c.running:
            continue
        pod = pods.setdefault(c.owner, {"replicas": c.replicas, "init": [], "main": []})
        requests = c.resources.get("requests") or {}
        figures = (quantity(requests.get("cpu", 0)), quantity(requests.get("memory", 0)))
        pod["init" if c.init else "main"].append(figures)
    cpu = memory = Decimal(0)
    for pod in pods.values():
        main_cpu = sum((f[0] for f in pod["main"]), Decimal(0))
        main_memory = sum((f[1] for f in pod["main"]), Decimal(0))
        init_cpu = max((f[0] for f in pod["init"]), default=Decimal(0))
        init_memory = max((f[1] for f in pod["init"]), default=Decimal(0))
        cpu += max(main_cpu, init_cpu) * pod["replicas"]
        memory += max(main_memory, init_memory) * pod["replicas"]
    return cpu, memory


def over_budget(objects: Iterable[Object]) -> list[str]:
    """Whether the requests fit the pods' share of a 4 GB node."""
    cpu, memory = requested(objects)
    problems = []
    if memory > POD_BUDGET_MEMORY:
        problems.append(
            f"memory requests {memory / 2**20:.0f}Mi exceed the {POD_BUDGET_MEMORY / 2**20:.0f}Mi "
            "a 4 GB node leaves to these pods"
        )
    if cpu > POD_BUDGET_CPU:
        problems.append(f"CPU requests {cpu} exceed the {POD_BUDGET_CPU} cores left to these pods")
    return problems


def image_references(objects: Iterable[Object]) -> Iterator[tuple[str, str]]:
    """``(owner, image)`` for every image the objects run or have the operator run."""
    objects = list(objects)
    for c in containers(objects):
        yield c.owner, c.image


def unpinned_images(objects: Iterable[Object]) -> list[str]:
    """Images neither pinned by digest nor tagged with an exact version (no latest, no 1.2)."""
    problems = []
    for owner, image in image_references(objects):
        if _DIGEST.search(image):
            continue
        name, _, tag = image.rpartition(":")
        if not name or "/" in tag or not _EXACT_TAG.match(tag):
            problems.append(f"{owner}: image {image!r} is not pinned by digest or exact version")
    return problems


def exposed(objects: Iterable[Object], vpn_address: str) -> list[str]:
    """Public Services (LoadBalancer, NodePort), hostPort/hostNetwork pods, externalIPs
    outside the VPN address: all would answer on the node's public side."""
    problems = []
    for obj in objects:
        meta = obj.get("metadata", {})
        if obj.get("kind") == "Service":
            spec = obj.get("spec", {})
            kind = spec.get("type", "ClusterIP")
            if (
                kind in ("LoadBalancer", "NodePort")
                and (meta.get("namespace"), meta.get("name")) not in PUBLIC_SERVICE_ALLOWLIST
            ):
                problems.append(f"{name_of(obj)} is of type {kind}: public, whatever UFW says")
            for address in spec.get("externalIPs") or []:
                if address != vpn_address:
                    problems.append(f"{name_of(obj)} answers on {address}, not the VPN address")
        spec = pod_spec(obj)
        if spec is None:
            continue
        if spec.get("hostNetwork"):
            problems.append(f"{name_of(obj)} runs on the host's network")
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                for port in c.get("ports") or []:
                    if "hostPort" in port:
                        problems.append(
                            f"{name_of(obj)}: container {c['name']} has hostPort {port['hostPort']}"
                        )
    return problems


def k3s_absent_scrapes_and_rules(objects: Iterable[Object]) -> list[str]:
    """Scrapes and alert rules of components k3s does not run apart, or that always
    fire on one node."""
    problems = []
    for obj in objects:
        kind = obj.get("kind")
        text = json.dumps(obj)
        if kind in ("ServiceMonitor", "PodMonitor", "Service", "PrometheusRule"):
            for job in K3S_ABSENT_JOBS:
                if (
                    f'job=\\"{job}\\"' in text
                    or f'"jobLabel": "{job}"' in text
                    or (kind in ("ServiceMonitor", "Service") and f"-{job}" in meta_name(obj))
                ):
                    problems.append(f"{name_of(obj)} scrapes or alerts on {job}")
        if kind == "PrometheusRule":
            for group in obj["spec"].get("groups", []):
                for rule in group.get("rules", []):
                    if rule.get("alert") in ALWAYS_FIRING_ON_ONE_NODE or "etcd" in rule.get(
                        "alert", ""
                    ):
                        problems.append(
                            f"{name_of(obj)}: rule {rule['alert']} cannot hold on one k3s node"
                        )
    return problems


def meta_name(obj: Mapping[str, Any]) -> str:
    """The object's name."""
    return str(obj.get("metadata", {}).get("name", ""))


# ---- offline validation --------------------------------------------------------------


class SchemaBook:
    """JSON schemas of custom resources, from rendered CRDs and a folder of JSON schemas.

    Strict: where a schema lists an object's properties and allows no unknown ones
    (x-kubernetes-preserve-unknown-fields), an unknown field is an error, as it would be
    silently dropped by the API server.
    """

    def __init__(self) -> None:
        self.schemas: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.sources: dict[tuple[str, str, str], str] = {}

    def add_crds(self, objects: Iterable[Object], source: str) -> None:
        """Learn the schemas of the CustomResourceDefinitions among ``objects``."""
        for obj in objects:
            if obj.get("kind") != "CustomResourceDefinition":
                continue
            spec = obj["spec"]
            for version in spec["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema:
                    key = (spec["group"], version["name"], spec["names"]["kind"])
                    self.schemas.setdefault(key, _strict(schema))
                    self.sources.setdefault(key, f"{source} CRD {obj['metadata']['name']}")

    def add_folder(self, folder: Path) -> None:
        """Learn ``<group>/<kind>_<version>.json`` schemas from a folder."""
        for path in folder.glob("*/*.json"):
            kind, _, version = path.stem.rpartition("_")
            schema = json.loads(path.read_text())
            for known_group, known_version, known_kind in list(self.schemas):
                if (known_group, known_version, known_kind.lower()) == (
                    path.parent.name,
                    version,
                    kind,
                ):
                    break
            else:
                key = (path.parent.name, version, _kind_named(kind))
                self.schemas[key] = _strict(schema)
                self.sources[key] = str(path)

    def validate(self, obj: Object) -> list[str]:
        """Problems of one custom resource against its schema; none known is a problem."""
        group, _, version = obj["apiVersion"].rpartition("/")
        key = (group, version, obj["kind"])
        schema = self.schemas.get(key) or self._by_lower_kind(key)
        if schema is None:
            return [f"{name_of(obj)}: no schema for {obj['apiVersion']} {obj['kind']}"]
        validator = jsonschema.Draft7Validator(schema)
        return [
            f"{name_of(obj)}: {'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
            for error in validator.iter_errors(obj)
        ]

    def _by_lower_kind(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        for (group, version, kind), schema in self.schemas.items():
            if (group, version, kind.lower()) == (key[0], key[1], key[2].lower()):
                return schema
        return None


_KINDS = {
    "helmchart": "HelmChart",
    "helmchartconfig": "HelmChartConfig",
    "application": "Application",
    "appproject": "AppProject",
}


def _kind_named(lower: str) -> str:
    return _KINDS.get(lower, lower)


def _strict(schema: Mapping[str, Any]) -> dict[str, Any]:
    strict = copy.deepcopy(dict(schema))

    def tighten(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if (
                isinstance(props, dict)
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                tighten(value)
        elif isinstance(node, list):
            for item in node:
                tighten(item)

    tighten(strict)
    # apiVersion, kind and metadata belong to the API server: always allowed at the top.
    for key in ("apiVersion", "kind", "metadata"):
        strict.setdefault("properties", {}).setdefault(key, {})
    return strict


def validate_objects(
    objects: Iterable[Object], kubernetes_version: str, book: SchemaBook
) -> tuple[list[str], int, int]:
    """Validate every object offline: built-in kinds with kubernetes-validate (strict),
    custom resources against ``book``. Returns the problems and how many objects of
    each sort were checked."""
    problems: list[str] = []
    builtin = custom = 0
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, kubernetes_version, strict=True)
            builtin += 1
        except kubernetes_validate.SchemaNotFoundError:
            custom += 1
            problems += book.validate(obj)
        except kubernetes_validate.ValidationError as error:
            builtin += 1
            path = ".".join(map(str, error.path)) or "(top)"
            problems.append(f"{name_of(obj)}: {path}: {error.message}")
    return problems, builtin, custom
