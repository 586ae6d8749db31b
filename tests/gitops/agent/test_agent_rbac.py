"""The agent's access to the cluster: valid manifests, and no more than two `get`s."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "gitops" / "agent"
KUBERNETES_VERSION = "1.31.0"
PROD_DATA = REPO / "inventories" / "group_data" / "prod.py"


def kubernetes_validate() -> str:
    """The validator from the virtualenv; its absence fails the test, it never skips."""
    beside = Path(sys.executable).with_name("kubernetes-validate")
    path = str(beside) if beside.exists() else shutil.which("kubernetes-validate")
    if path is None:
        pytest.fail("kubernetes-validate not found: pip install kubernetes-validate")
    return path


def validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubernetes_validate(), "-k", KUBERNETES_VERSION, "--strict", *map(str, files)],
        capture_output=True, text=True, timeout=300, check=False,
    )


def manifest_files() -> list[Path]:
    return sorted(MANIFESTS.glob("*.yaml"))


def manifests() -> dict[str, dict[str, Any]]:
    """Every object under gitops/agent, keyed by kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in objects, f"two {doc['kind']}s"
            objects[doc["kind"]] = doc
    return objects


def test_manifests_validate_offline_against_kubernetes_1_31() -> None:
    files = manifest_files()
    assert [f.name for f in files] == [
        "namespace.yaml", "role.yaml", "rolebinding.yaml", "serviceaccount.yaml",
        "token-secret.yaml",
    ]

    done = validate(*files)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" passed for resource ") == len(files), done.stdout


def test_the_validator_rejects_a_role_with_a_wrong_field(tmp_path: Path) -> None:
    """So a pass above means something: a verb given as a string is refused."""
    broken = tmp_path / "role.yaml"
    broken.write_text((MANIFESTS / "role.yaml").read_text().replace('["get"]', "get", 1))

    done = validate(broken)

    assert done.returncode != 0
    assert "verbs" in done.stdout + done.stderr


def test_role_allows_only_get_on_one_named_service_and_one_named_secret() -> None:
    role = manifests()["Role"]

    assert role["metadata"]["namespace"] == "database"
    granted: dict[str, list[str]] = {}
    for rule in role["rules"]:
        assert rule["verbs"] == ["get"], rule
        assert rule["apiGroups"] == [""], rule
        assert rule.get("resourceNames"), f"rule without resourceNames: {rule}"
        assert "*" not in str(rule), rule
        assert set(rule) == {"apiGroups", "resources", "resourceNames", "verbs"}, rule
        for resource in rule["resources"]:
            granted.setdefault(resource, []).extend(rule["resourceNames"])
    assert granted == {"services": ["postgresql"], "secrets": ["postgresql-credentials"]}


def test_binding_gives_the_role_to_the_agents_service_account_only() -> None:
    objects = manifests()
    account = objects["ServiceAccount"]
    binding = objects["RoleBinding"]

    assert account["metadata"] == {
        **account["metadata"], "name": "socle-agent", "namespace": "socle-system"}
    assert objects["Namespace"]["metadata"]["name"] == "socle-system"
    assert account["automountServiceAccountToken"] is False
    assert binding["metadata"]["namespace"] == objects["Role"]["metadata"]["namespace"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
        "name": objects["Role"]["metadata"]["name"]}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "socle-agent", "namespace": "socle-system"}]
    assert "ClusterRole" not in objects and "ClusterRoleBinding" not in objects


def test_token_secret_is_a_service_account_token_of_the_agent() -> None:
    token = manifests()["Secret"]

    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["namespace"] == "socle-system"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "socle-agent"}
    # Kubernetes fills in the token: nothing secret is in the repository
    assert "data" not in token and "stringData" not in token


def test_role_names_what_the_production_agent_is_configured_to_read() -> None:
    kube = runpy.run_path(str(PROD_DATA))["agent_settings"]["postgres"]["kubernetes"]
    rules = {rule["resources"][0]: rule["resourceNames"] for rule in manifests()["Role"]["rules"]}

    assert manifests()["Role"]["metadata"]["namespace"] == kube["namespace"]
    assert rules == {"services": [kube["service"]], "secrets": [kube["secret"]]}
