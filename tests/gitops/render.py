"""Render the platform offline as Argo CD would: the root Application, then each child.

Argo CD's repo server turns an Application's sources into objects: a chart from a Helm
repository (`helm template` with the release name, the destination namespace, the value
files and `valuesObject`), a chart in a folder of the git repository, or a folder of plain
manifests. This module does the same with the real `helm` and the real pinned charts, read
from a folder (`charts_dir()`) instead of their repositories, and the git repository's
working tree instead of a clone.

Example::

    renderer = Renderer()
    platform = renderer.platform(root_values)     # every object of phases 4 to 6
    platform.applications["kube-prometheus-stack"]  # its rendered objects
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from socle.versions import load_versions

REPO = Path(__file__).resolve().parents[2]
# Where the pinned charts and the CRD schemas are looked for when the environment does
# not say: a `shared/` folder beside the repository or beside one of its parents.
CHARTS_ENV = "SOCLE_CHARTS_DIR"
CRD_SCHEMAS_ENV = "SOCLE_CRD_SCHEMAS_DIR"
HELM_ENV = "SOCLE_HELM"
# API groups the cluster serves once its CRDs are in (Argo CD passes the cluster's own).
API_VERSIONS = (
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1alpha1",
    "argoproj.io/v1alpha1",
    "helm.cattle.io/v1",
)
ROOT_NAMESPACE = "argocd"


class RenderError(RuntimeError):
    """A chart or manifest could not be rendered; the message says which and why."""


class _Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader, plus the `=` scalar the Prometheus operator's CRDs hold."""


# An enum value `=` in those CRDs is read as YAML's `value` tag, which safe_load refuses.
_Loader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


def load_all(text: str) -> list[dict[str, Any]]:
    """Every non-empty document of a YAML stream."""
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc]


def _shared_folder(*parts: str) -> Path | None:
    for parent in REPO.parents:
        candidate = parent.joinpath("shared", *parts)
        if candidate.is_dir():
            return candidate
    return None


def charts_dir() -> Path | None:
    """The folder of pinned chart archives: $SOCLE_CHARTS_DIR, else the nearest shared/charts."""
    if os.environ.get(CHARTS_ENV):
        return Path(os.environ[CHARTS_ENV])
    return _shared_folder("charts")


def crd_schemas_dir() -> Path | None:
    """JSON schemas of custom resources: $SOCLE_CRD_SCHEMAS_DIR, else shared/schemas/crds."""
    if os.environ.get(CRD_SCHEMAS_ENV):
        return Path(os.environ[CRD_SCHEMAS_ENV])
    return _shared_folder("schemas", "crds")


def helm_path() -> Path | None:
    """The helm setup-machine.sh installs (.tools/bin/helm), $SOCLE_HELM, or one on PATH."""
    if os.environ.get(HELM_ENV):
        return Path(os.environ[HELM_ENV])
    local = REPO / ".tools" / "bin" / "helm"
    if local.exists():
        return local
    found = shutil.which("helm")
    return Path(found) if found else None


def missing_tools() -> list[str]:
    """What rendering needs and this machine lacks, each with how to get it."""
    missing = []
    if helm_path() is None:
        missing.append("helm (run scripts/setup-machine.sh, or set SOCLE_HELM)")
    folder = charts_dir()
    if folder is None or not folder.is_dir():
        missing.append(
            f"the pinned charts folder (set {CHARTS_ENV}; looked for shared/charts beside "
            f"the repository and its parents)"
        )
    else:
        for name, pin in load_versions().charts.items():
            if not (folder / f"{name}-{pin.version}.tgz").exists():
                missing.append(f"{folder}/{name}-{pin.version}.tgz")
    return missing


@dataclass
class Platform:
    """The rendered platform: the root's objects and each Application's objects."""

    root: list[dict[str, Any]]
    applications: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def objects(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every object with the name of the Application it belongs to (``root`` for the root's)."""
        for obj in self.root:
            yield "root", obj
        for name, objects in self.applications.items():
            for obj in objects:
                yield name, obj

    def find(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The one object of that kind and name (and namespace, when given)."""
        found = [
            obj for _, obj in self.objects()
            if obj["kind"] == kind and obj["metadata"]["name"] == name
            and (namespace is None or obj["metadata"].get("namespace") == namespace)
        ]  # fmt: skip
        if len(found) != 1:
            raise KeyError(f"{len(found)} objects {kind} {namespace}/{name}")
        return found[0]


class Renderer:
    """Renders Applications the way Argo CD's repo server does, with the real helm."""

    def __init__(
        self,
        repo: Path = REPO,
        charts: Path | None = None,
        helm: Path | None = None,
        kube_version: str | None = None,
    ) -> None:
        self.repo = repo
        self.charts = charts or charts_dir()
        self.helm = helm or helm_path()
        self.kube_version = kube_version or load_versions().k3s.kubernetes_version
        if self.charts is None or self.helm is None:
            raise RenderError("cannot render: " + "; ".join(missing_tools()))

    def helm_template(
        self,
        release: str,
        chart: Path,
        namespace: str,
        value_files: Iterable[Path] = (),
        values: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """`helm template` of one chart (archive or folder), its objects parsed."""
        with tempfile.TemporaryDirectory(prefix="socle-render-") as temp:
            command = [
                str(self.helm), "template", release, str(chart), "--namespace", namespace,
                "--kube-version", self.kube_version, "--include-crds",
            ]  # fmt: skip
            for api in API_VERSIONS:
                command += ["--api-versions", api]
            for file in value_files:
                command += ["--values", str(file)]
            if values:
                inline = Path(temp) / "values.json"
                inline.write_text(json.dumps(values))
                command += ["--values", str(inline)]
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=120, check=False,
                env={**os.environ, "HELM_CACHE_HOME": temp, "HELM_CONFIG_HOME": temp,
                     "HELM_DATA_HOME": temp},
            )  # fmt: skip
        if done.returncode != 0:
            raise RenderError(f"helm template {chart} failed: {done.stderr.strip()}")
        return load_all(done.stdout)

    def chart_archive(self, chart: str, version: str) -> Path:
        """The pinned chart's archive in the charts folder."""
        assert self.charts is not None
        path = self.charts / f"{chart}-{version}.tgz"
        if not path.exists():
            raise RenderError(f"no archive {path} for chart {chart} {version}")
        return path

    def root(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The root Application's objects (the app of apps) for ``values``."""
        return self.helm_template("root", self.repo / "gitops" / "root", ROOT_NAMESPACE, (), values)

    def application(self, app: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The objects one Application renders to, with their namespace set as Argo CD does."""
        spec = app["spec"]
        namespace = spec["destination"]["namespace"]
        sources = spec.get("sources") or [spec["source"]]
        refs = {s["ref"]: s for s in sources if "ref" in s}
        objects: list[dict[str, Any]] = []
        for source in sources:
            if "ref" in source:
                continue
            helm = source.get("helm", {})
            files = [self._value_file(name, refs, source) for name in helm.get("valueFiles", [])]
            release = helm.get("releaseName", app["metadata"]["name"])
            if "chart" in source:
                chart = self.chart_archive(source["chart"], source["targetRevision"])
                objects += self.helm_template(
                    release, chart, namespace, files, helm.get("valuesObject")
                )
            else:
                folder = self._git_path(source)
                if (folder / "Chart.yaml").exists():
                    objects += self.helm_template(
                        release, folder, namespace, files, helm.get("valuesObject")
                    )
                else:
                    objects += manifests_in(folder)
        return [_with_namespace(obj, namespace) for obj in objects]

    def platform(self, values: Mapping[str, Any]) -> Platform:
        """The root's objects and every Application's, rendered in parallel."""
        root = self.root(values)
        apps = [obj for obj in root if obj["kind"] == "Application"]
        with ThreadPoolExecutor(max_workers=4) as pool:
            rendered = list(pool.map(self.application, apps))
        return Platform(
            root=root,
            applications={
                app["metadata"]["name"]: objs for app, objs in zip(apps, rendered, strict=True)
            },
        )

    def _git_path(self, source: Mapping[str, Any]) -> Path:
        path = (self.repo / source["path"]).resolve()
        if not path.is_relative_to(self.repo) or not path.is_dir():
            raise RenderError(f"source path {source['path']!r} is not a folder of the repository")
        return path

    def _value_file(
        self, name: str, refs: Mapping[str, Mapping[str, Any]], source: Mapping[str, Any]
    ) -> Path:
        if name.startswith("$"):
            ref, _, rest = name[1:].partition("/")
            if ref not in refs:
                raise RenderError(f"value file {name!r} names no source with ref {ref!r}")
            path = (self.repo / rest).resolve()
        else:
            path = (self._git_path(source) / name).resolve()
        if not path.is_relative_to(self.repo) or not path.is_file():
            raise RenderError(f"value file {name!r} is not a file of the repository")
        return path


def manifests_in(folder: Path) -> list[dict[str, Any]]:
    """The objects of a folder of plain manifests (Argo CD's directory source, no recursion)."""
    objects: list[dict[str, Any]] = []
    for path in sorted(folder.iterdir()):
        if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
            objects += load_all(path.read_text())
    return objects


def _with_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    # Argo CD puts namespaced objects without one into the destination namespace; the
    # cluster-scoped kinds here are known, so nothing needs asking the API server.
    if obj.get("kind") not in CLUSTER_SCOPED and not obj["metadata"].get("namespace"):
        obj["metadata"]["namespace"] = namespace
    return obj


CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService",
})  # fmt: skip
