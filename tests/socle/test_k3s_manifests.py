"""Objects the deploys apply themselves: digests, namespaces, the test ingress."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from socle.k3s_manifests import (
    DIGEST_ANNOTATION,
    ingress_check_objects,
    load_manifests,
    manifest_digest,
    missing_namespaces,
    object_ref,
    with_digests,
)
from socle.versions import load_versions

REPO = Path(__file__).resolve().parents[2]


def test_agent_manifests_load_and_need_the_database_namespace() -> None:
    objects = load_manifests(REPO / "gitops" / "agent")

    assert ("Namespace", "", "socle-system") in [object_ref(o) for o in objects]
    assert missing_namespaces(objects) == ["database"]


def test_digest_ignores_its_own_annotation_and_follows_content() -> None:
    objects = load_manifests(REPO / "gitops" / "agent")
    marked = with_digests(objects)

    assert [manifest_digest(o) for o in marked] == [manifest_digest(o) for o in objects]
    assert marked[0]["metadata"]["annotations"][DIGEST_ANNOTATION] == manifest_digest(objects[0])
    changed = json.loads(json.dumps(objects[0]))
    changed["metadata"]["labels"]["extra"] = "1"
    assert manifest_digest(changed) != manifest_digest(objects[0])


def test_a_folder_without_manifests_or_with_a_nameless_object_is_refused(tmp_path: Path) -> None:
    from socle.k3s_manifests import ManifestError

    with pytest.raises(ManifestError, match="no .yaml"):
        load_manifests(tmp_path)
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    with pytest.raises(ManifestError, match="metadata.name"):
        load_manifests(tmp_path)


def test_ingress_check_objects_validate_at_the_pinned_kubernetes_version(tmp_path: Path) -> None:
    major, minor = load_versions().k3s.minor
    image = "docker.io/rancher/mirrored-library-busybox:1.37.0@sha256:" + "a" * 64
    objects = ingress_check_objects("test-ingress.socle.invalid", image)
    files = []
    for index, obj in enumerate(objects):
        path = tmp_path / f"{index}.json"
        path.write_text(json.dumps(obj))
        files.append(str(path))
    validator = Path(sys.executable).with_name("kubernetes-validate")

    done = subprocess.run([str(validator), "-k", f"{major}.{minor}.0", "--strict", *files],
                          capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    kinds = [o["kind"] for o in objects]
    assert kinds == ["Namespace", "Deployment", "Service", "Ingress"]
    assert objects[2]["spec"]["type"] == "ClusterIP"
    assert objects[3]["spec"]["rules"][0]["host"] == "test-ingress.socle.invalid"
