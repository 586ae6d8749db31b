"""Objects put into the node's k3s: auto-deploy manifests and Secrets from SOPS."""

from __future__ import annotations

import re
from collections.abc import Generator

from pyinfra import host
from pyinfra.api import HiddenValue, OperationValueError, QuoteString, StringCommand, operation

from facts.kube_objects import KubeObject
from operations import secret_files, text_files
from socle.cluster_manifests import MANIFESTS_DIR, SECRETS_DIR, manifest_text
from socle.cluster_manifests import namespace as namespace_object

_FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_RESOURCE_NAME = re.compile(r"[A-Za-z0-9.-]{1,253}")


def manifest_path(name: str) -> str:
    """The auto-deploy manifest file ``name``.yaml in k3s's manifests folder."""
    if not _FILE_NAME.match(name):
        raise OperationValueError(f"not a manifest name: {name!r}")
    return f"{MANIFESTS_DIR}/socle-{name}.yaml"


def apply_secret(name: str, namespace: str, manifest: HiddenValue) -> list[object]:
    """
    Put a Secret's manifest on the node as a root-only file and apply it with k3s.

    The clear manifest travels only through ``secret_files.secret_file`` (root, 0600,
    never in a command line or a diff) and is applied from that file; it is applied again
    when it changed or when the Secret is missing from the cluster.
    """
    if not _FILE_NAME.match(name) or not _FILE_NAME.match(namespace):
        raise OperationValueError(f"not a Secret name and namespace: {name!r} {namespace!r}")
    path = f"{SECRETS_DIR}/{namespace}-{name}.yaml"
    written = secret_files.secret_file(
        name=f"Secret {namespace}/{name} (root-only file)", path=path, secret=manifest
    )
    present = (
        host.get_fact(KubeObject, kind="secret", object_name=name, namespace=namespace)
        is not None
    )
    applied = apply_file(
        name=f"Secret {namespace}/{name} applied",
        path=path,
        _if=(lambda: written.did_change() or not present),
    )
    return [written, applied]


def namespace(name: str) -> None:
    """
    A namespace as a k3s auto-deploy manifest (``socle-namespace-<name>.yaml``), so it
    exists before Argo CD syncs into it and comes back with k3s, applied at once too.

    Every phase that needs the namespace writes the same file: they never take turns.
    """
    path = manifest_path(f"namespace-{name}")
    written = text_files.file(
        name=f"Namespace {name}",
        path=path,
        content=manifest_text(namespace_object(name)),
        mode="600",
    )
    # k3s applies the folder's files on its own time: what follows cannot wait for it.
    present = (
        host.get_fact(KubeObject, kind="namespace", object_name=name, namespace=name)
        is not None
    )
    apply_file(
        name=f"Namespace {name} applied",
        path=path,
        _if=(lambda: written.did_change() or not present),
    )


def namespace_secrets(namespace_name: str, secrets: dict[str, HiddenValue]) -> None:
    """
    A namespace (``namespace``) and Secrets in it, each applied from a root-only file
    (``apply_secret``).

    + namespace_name: the namespace
    + secrets: each Secret's name and its whole manifest, hidden
    """
    namespace(namespace_name)
    for name, manifest in secrets.items():
        apply_secret(name, namespace_name, manifest)


@operation()
def apply_file(path: str) -> Generator[StringCommand, None, None]:
    """
    Apply a manifest file on the node with ``k3s kubectl apply -f``.

    + path: the file (on the node)
    """
    yield StringCommand("k3s", "kubectl", "apply", "-f", QuoteString(path))


def _wait_command(
    kind: str, name: str, namespace: str, pattern: str, what: str, timeout_seconds: int
) -> StringCommand:
    """Poll ``kubectl get -o json`` until its output matches ``pattern`` (grep -E)."""
    for value in (kind, name, namespace):
        if not _RESOURCE_NAME.fullmatch(value):
            raise OperationValueError(f"not a resource name: {value!r}")
    where = f"{kind} {namespace}/{name}"
    return StringCommand(
        f"end=$(( $(date +%s) + {int(timeout_seconds)} )); "
        f"until k3s kubectl get {kind} {name} -n {namespace} -o json 2>/dev/null"
        f" | grep -Eq '{pattern}'; do "
        f"if [ $(date +%s) -ge $end ]; then echo '{where} not {what} after "
        f"{int(timeout_seconds)} s: see k3s kubectl -n {namespace} describe {kind} {name}; "
        f"k3s kubectl -n {namespace} get events' >&2; "
        "exit 1; fi; sleep 2; done"
    )


@operation()
def wait_ready(
    kind: str,
    object_name: str,
    namespace: str,
    ready_field: str = "readyReplicas",
    timeout_seconds: int = 600,
) -> Generator[StringCommand, None, None]:
    """
    Wait until an object reports ``ready_field`` of at least 1, or fail saying what to read.

    + kind, object_name, namespace: the object (a Deployment, a StatefulSet)
    + ready_field: the status field counting ready replicas
    + timeout_seconds: how long before giving up
    """
    if not re.fullmatch(r"[A-Za-z]{1,63}", ready_field):
        raise OperationValueError(f"not a status field: {ready_field!r}")
    yield _wait_command(
        kind, object_name, namespace, f'"{ready_field}": *[1-9]', "ready", timeout_seconds
    )


@operation()
def wait_annotation(
    kind: str,
    object_name: str,
    namespace: str,
    annotation: str,
    value: str,
    timeout_seconds: int = 120,
) -> Generator[StringCommand, None, None]:
    """
    Wait until the cluster's object carries ``annotation: value`` (k3s applies its
    manifests folder on its own time), or fail saying what to read.

    + kind, object_name, namespace: the object
    + annotation, value: what it must carry, e.g. ``helmcharts.helm.cattle.io/unmanaged``
    + timeout_seconds: how long before giving up
    """
    if not re.fullmatch(r"([a-z0-9.-]{1,253}/)?[A-Za-z0-9._-]{1,63}", annotation):
        raise OperationValueError(f"not an annotation name: {annotation!r}")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,63}", value):
        raise OperationValueError(f"not a plain annotation value: {value!r}")
    pattern = f'"{re.escape(annotation)}": *"{re.escape(value)}"'
    yield _wait_command(
        kind, object_name, namespace, pattern, f"annotated {annotation}={value}",
        timeout_seconds,
    )  # fmt: skip
