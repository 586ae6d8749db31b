"""The stand-in k3s's controllers: what would act on the recorded objects in a real cluster.

Only for tests, never shipped. Nothing runs in the stand-in: no chart is installed, no
container started. These play just enough of three controllers for socle's deploys to go
through their real steps, and every object or status they write says it was played:

- **helm-controller**: a HelmChart (not marked unmanaged) is "installed" from the objects
  the test rendered for it with the real ``helm`` and the real pinned chart, given as
  ``<data-dir>/standin/rendered/helmchart-<name>.json`` (``chart``, ``version``,
  ``values_sha256``, ``objects``). The rendering must be of the same chart, version and
  values as the HelmChart, or the HelmChart is marked failed, as a failed install is. A
  Helm release record (``sh.helm.release.v1.<name>.v1``, labels ``owner=helm``,
  ``name=<name>``) is written in the target namespace. An unmanaged HelmChart is left
  alone, as helm-controller leaves it.
- **Argo CD**: once ``argocd-application-controller`` is ready, each Application in the
  ``argocd`` namespace is "synced" from ``standin/rendered/application-<name>.json``
  (``sources_sha256``, ``objects``): the objects are recorded in its destination with
  Argo CD's tracking annotation, and its status says Synced and Healthy. Sources that
  differ from the rendering's are a comparison error, OutOfSync.
- **workload controllers**: each Deployment, StatefulSet and DaemonSet gets its replicas
  (one for a DaemonSet: one node) as Pods recorded from its pod template, phase Running,
  and a status counting them ready.

Custom resource definitions are recorded without their schemas: the stand-in validates
nothing, and kine's table stays small.

Example (the server calls it after each look at its manifests folder)::

    for line in reconcile(store):
        print(line)
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.standins.k3s import OBJECT_PREFIX, StandinError, Store

PLAYED_BY = "standin.socle.test/played-by"
PLAYED = "the stand-in k3s: recorded only, nothing runs"
OWNER_LABEL = "standin.socle.test/owner"
UNMANAGED_ANNOTATION = "helmcharts.helm.cattle.io/unmanaged"
# Argo CD 3's default resource tracking: this annotation on every object it applies.
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
ARGOCD_NAMESPACE = "argocd"
ARGOCD_CONTROLLER = "argocd-application-controller"
WORKLOADS = ("deployments", "statefulsets", "daemonsets")


def digest(value: Any) -> str:
    """The sha256 of ``value`` as sorted JSON: how renderings are matched to their source."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def application_sources_sha256(application: Mapping[str, Any]) -> str:
    """The digest of an Application's sources (``spec.sources`` or ``spec.source``)."""
    spec = application.get("spec") or {}
    return digest(spec.get("sources") or [spec.get("source")])


def helmchart_values_sha256(values_content: str) -> str:
    """The digest of a HelmChart's ``valuesContent``."""
    return hashlib.sha256(values_content.encode()).hexdigest()


def rendered_dir(store: Store) -> Path:
    """Where the test puts its renderings on the node."""
    return store.paths.data_dir / "standin" / "rendered"


def _rendering(store: Store, name: str) -> dict[str, Any] | None:
    path = rendered_dir(store) / f"{name}.json"
    if not path.is_file():
        return None
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else None


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as recorded: a CRD without its schemas, marked as played."""
    recorded = copy.deepcopy(dict(obj))
    if recorded.get("kind") == "CustomResourceDefinition":
        for version in recorded.get("spec", {}).get("versions") or []:
            version.pop("schema", None)
    annotations = recorded.setdefault("metadata", {}).setdefault("annotations", {}) or {}
    annotations[PLAYED_BY] = PLAYED
    recorded["metadata"]["annotations"] = annotations
    return recorded


def _ensure_namespace(store: Store, name: str) -> None:
    if not store.namespace_exists(name):
        store.apply(_slim({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
                    None)


def _apply_all(
    store: Store, objects: list[dict[str, Any]], namespace: str, tracked_by: str | None = None
) -> list[str]:
    """Record ``objects`` (CRDs and namespaces first, as Helm and Argo CD order them);
    ``tracked_by``: the Application whose tracking annotation Argo CD puts on them."""
    first = ("CustomResourceDefinition", "Namespace")
    ordered = sorted(objects, key=lambda o: 0 if o.get("kind") in first else 1)
    failures = []
    for obj in ordered:
        target = (obj.get("metadata") or {}).get("namespace") or namespace
        recorded = _slim(obj)
        if tracked_by is not None:
            group = obj.get("apiVersion", "").rpartition("/")[0]
            where = "" if obj.get("kind") in store.cluster_kinds() else target
            recorded["metadata"]["annotations"][TRACKING_ANNOTATION] = (
                f"{tracked_by}:{group}/{obj.get('kind')}:{where}/{obj['metadata']['name']}"
            )
        try:
            if obj.get("kind") not in store.cluster_kinds():
                _ensure_namespace(store, target)
            store.apply(recorded, namespace)
        except StandinError as error:
            failures.append(str(error))
    return failures


def _set_status(store: Store, key: str, obj: dict[str, Any], status: dict[str, Any]) -> bool:
    """Record ``obj`` with ``status`` when that changes it."""
    if obj.get("status") == status:
        return False
    changed = copy.deepcopy(obj)
    changed["status"] = status
    store.record(changed, key)
    return True


# helm-controller --------------------------------------------------------------------------


def helm_controller(store: Store) -> Iterator[str]:
    """Install each managed HelmChart from the test's rendering of it."""
    for key, chart in store.all_objects("helmcharts").items():
        meta, spec = chart["metadata"], chart.get("spec") or {}
        if (meta.get("annotations") or {}).get(UNMANAGED_ANNOTATION) == "true":
            continue
        name = meta["name"]
        wanted = {
            "chart": spec.get("chart"),
            "version": spec.get("version"),
            "values_sha256": helmchart_values_sha256(spec.get("valuesContent") or ""),
        }
        target = spec.get("targetNamespace") or meta.get("namespace") or "default"
        status = chart.get("status") or {}
        if status.get("standin", {}).get("installed") == digest([wanted, target]):
            continue
        rendering = _rendering(store, f"helmchart-{name}")
        given = {k: (rendering or {}).get(k) for k in wanted}
        if rendering is None or given != wanted:
            why = ("no rendering was given" if rendering is None
                   else f"the rendering given is of {given}, not {wanted}")
            failed = {"conditions": [{"type": "Failed", "status": "True",
                                      "reason": "StandinNoRendering",
                                      "message": f"stand-in helm-controller: {why}"}]}
            if _set_status(store, key, chart, failed):
                yield f"helm-controller (stand-in): {name} not installed: {why}"
            continue
        if spec.get("createNamespace"):
            _ensure_namespace(store, target)
        failures = _apply_all(store, rendering["objects"], target)
        if failures:
            failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "Apply",
                                      "message": "; ".join(failures)[:1000]}]}
            if _set_status(store, key, chart, failed):
                yield f"helm-controller (stand-in): {name} failed: {failures[0]}"
            continue
        store.apply(_release_record(name, target, spec.get("version") or ""), target)
        _set_status(store, key, chart, {
            "jobName": f"helm-install-{name}",
            "standin": {"installed": digest([wanted, target]), "note": PLAYED},
        })  # fmt: skip
        yield (f"helm-controller (stand-in): {name} {spec.get('version')} recorded in "
               f"{target} ({len(rendering['objects'])} objects)")


def _release_record(name: str, namespace: str, version: str) -> dict[str, Any]:
    note = f"stand-in Helm release record of {name} {version}: no chart was installed"
    return _slim({
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": f"sh.helm.release.v1.{name}.v1", "namespace": namespace,
                     "labels": {"owner": "helm", "name": name, "status": "deployed",
                                "version": "1"}},
        "data": {"release": base64.b64encode(note.encode()).decode()},
    })  # fmt: skip


# Argo CD ----------------------------------------------------------------------------------


def _argocd_runs(store: Store) -> bool:
    controller = store.get(f"{OBJECT_PREFIX}statefulsets/{ARGOCD_NAMESPACE}/{ARGOCD_CONTROLLER}")
    return bool(controller and (controller.get("status") or {}).get("readyReplicas"))


def argocd(store: Store) -> Iterator[str]:
    """Sync each Application of the argocd namespace from the test's rendering of it."""
    if not _argocd_runs(store):
        return
    for key, app in sorted(store.all_objects("applications").items()):
        meta, spec = app["metadata"], app.get("spec") or {}
        if meta.get("namespace") != ARGOCD_NAMESPACE:
            continue
        name = meta["name"]
        sources = application_sources_sha256(app)
        status = app.get("status") or {}
        if status.get("standin", {}).get("synced") == sources:
            continue
        rendering = _rendering(store, f"application-{name}")
        if rendering is None or rendering.get("sources_sha256") != sources:
            why = ("no rendering was given" if rendering is None
                   else "the rendering given is of other sources")
            unknown = {
                "sync": {"status": "OutOfSync"}, "health": {"status": "Missing"},
                "conditions": [{"type": "ComparisonError",
                                "message": f"stand-in Argo CD: {why}"}],
            }  # fmt: skip
            if _set_status(store, key, app, unknown):
                yield f"Argo CD (stand-in): {name} not synced: {why}"
            continue
        destination = (spec.get("destination") or {}).get("namespace") or ARGOCD_NAMESPACE
        options = (spec.get("syncPolicy") or {}).get("syncOptions") or []
        if "CreateNamespace=true" in options:
            _ensure_namespace(store, destination)
        failures = _apply_all(store, rendering["objects"], destination, tracked_by=name)
        synced = {
            "sync": {"status": "OutOfSync" if failures else "Synced", "revision": "stand-in"},
            "health": {"status": "Degraded" if failures else "Healthy"},
            "standin": {"synced": None if failures else sources, "note": PLAYED},
        }
        if failures:
            synced["conditions"] = [{"type": "SyncError", "message": "; ".join(failures)[:1000]}]
        _set_status(store, key, store.get(key) or app, synced)
        yield (f"Argo CD (stand-in): {name} "
               f"{'failed: ' + failures[0] if failures else 'synced'} "
               f"({len(rendering['objects'])} objects into {destination})")


# workload controllers ---------------------------------------------------------------------


def workloads(store: Store) -> Iterator[str]:
    """Give each Deployment, StatefulSet and DaemonSet its Pods, Running, and a ready status."""
    live: set[str] = set()
    for resource in WORKLOADS:
        for key, workload in store.all_objects(resource).items():
            meta, spec = workload["metadata"], workload.get("spec") or {}
            kind, name, namespace = workload["kind"], meta["name"], meta.get("namespace")
            owner = f"{kind}.{name}"
            live.add(f"{namespace}/{owner}")
            replicas = 1 if kind == "DaemonSet" else int(spec.get("replicas", 1))
            template = spec.get("template") or {}
            wanted = digest([template, replicas])
            status = workload.get("status") or {}
            if status.get("standin", {}).get("pods") == wanted:
                continue
            for pod_key, pod in store.all_objects("pods").items():
                labels = pod["metadata"].get("labels") or {}
                if pod["metadata"].get("namespace") == namespace and (
                    labels.get(OWNER_LABEL) == owner
                ):
                    store.delete(pod_key)
            for index in range(replicas):
                store.record(_pod(workload, template, index))
            ready: dict[str, Any] = (
                {"desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": 1,
                 "numberAvailable": 1, "updatedNumberScheduled": 1}
                if kind == "DaemonSet" else
                {"replicas": replicas, "readyReplicas": replicas,
                 "availableReplicas": replicas, "updatedReplicas": replicas}
            )  # fmt: skip
            ready["standin"] = {"pods": wanted, "note": PLAYED}
            _set_status(store, key, workload, ready)
            yield f"workloads (stand-in): {kind} {namespace}/{name}: {replicas} pod(s) recorded"
    for pod_key, pod in store.all_objects("pods").items():
        owned_by = (pod["metadata"].get("labels") or {}).get(OWNER_LABEL)
        if owned_by and f"{pod['metadata'].get('namespace')}/{owned_by}" not in live:
            store.delete(pod_key)


def _pod(workload: Mapping[str, Any], template: Mapping[str, Any], index: int) -> dict[str, Any]:
    meta = workload["metadata"]
    template_meta = template.get("metadata") or {}
    return _slim({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{meta['name']}-standin-{index}",
            "namespace": meta.get("namespace"),
            "labels": {**(template_meta.get("labels") or {}),
                       OWNER_LABEL: f"{workload['kind']}.{meta['name']}"},
            "annotations": dict(template_meta.get("annotations") or {}),
            "ownerReferences": [{"apiVersion": workload.get("apiVersion"),
                                 "kind": workload["kind"], "name": meta["name"]}],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
        "status": {"phase": "Running"},
    })  # fmt: skip


def reconcile(store: Store) -> list[str]:
    """One pass of every stand-in controller, until nothing more changes; the log lines."""
    lines: list[str] = []
    for _ in range(10):
        done = [*helm_controller(store), *workloads(store), *argocd(store)]
        if not done:
            break
        lines += done
    return lines
