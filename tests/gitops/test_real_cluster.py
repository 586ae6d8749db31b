"""Opt-in: phases 4 to 6 on a real k3s, where one runs and the internet is reachable.

Set SOCLE_REAL_KUBECONFIG to an admin kubeconfig of a k3s node (socle kubeconfig) on
which deploys/argocd.py, monitoring.py and postgresql.py have run, and SOCLE_REAL_SMTP_CHECK
to a command that exits 0 once the test alert's mail is in the operators' mailbox. The test
checks every Application Synced and Healthy, a test alert's mail, and PostgreSQL read and
write across a pod restart. Without them it is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

KUBECONFIG = os.environ.get("SOCLE_REAL_KUBECONFIG")
pytestmark = [
    pytest.mark.internet,
    pytest.mark.skipif(
        not KUBECONFIG or shutil.which("kubectl") is None,
        reason="no real k3s here (set SOCLE_REAL_KUBECONFIG to a deployed node's kubeconfig, "
        "with kubectl on PATH): phases 4-6 were proven offline (render, validation, alert path)",
    ),
]


def kubectl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return done.stdout


def wait(predicate, timeout: float = 900):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(10)
    raise AssertionError("not within the time allowed")


def test_every_application_is_synced_and_healthy() -> None:
    def all_good() -> bool:
        apps = json.loads(kubectl("-n", "argocd", "get", "applications", "-o", "json"))["items"]
        return len(apps) >= 7 and all(
            a["status"].get("sync", {}).get("status") == "Synced"
            and a["status"].get("health", {}).get("status") == "Healthy"
            for a in apps
        )

    wait(all_good)


def test_a_test_alert_mail_arrives() -> None:
    check = os.environ.get("SOCLE_REAL_SMTP_CHECK")
    if not check:
        pytest.skip("SOCLE_REAL_SMTP_CHECK not set: no way to read the operators' mailbox")
    url = kubectl(
        "-n",
        "monitoring",
        "get",
        "service",
        "kps-alertmanager",
        "-o",
        "jsonpath=http://{.spec.clusterIP}:9093",
    )
    subprocess.run(["socle", "alert", "test", "--alertmanager", url], check=True)
    wait(lambda: subprocess.run(check, shell=True, check=False).returncode == 0, 300)


def test_postgresql_keeps_writes_across_a_pod_restart() -> None:
    marker = uuid.uuid4().hex
    psql = ["-n", "database", "exec", "postgresql-0", "--", "psql", "-U", "postgres", "-tAc"]
    kubectl(
        *psql,
        "create table if not exists socle_check (v text); "
        f"insert into socle_check values ('{marker}')",
    )
    kubectl("-n", "database", "delete", "pod", "postgresql-0", "--wait=true")
    kubectl("-n", "database", "wait", "--for=condition=Ready", "pod/postgresql-0", "--timeout=300s")

    assert marker in kubectl(*psql, "select v from socle_check")
