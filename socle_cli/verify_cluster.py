"""`socle verify`'s checks of phases 3 to 6: k3s, Argo CD, monitoring, PostgreSQL.

What the cluster says is read on the node over SSH (``k3s kubectl``, boiled down there by
the project's facts); what answers on the VPN address (Alertmanager, Prometheus,
PostgreSQL) is tried from this machine, which must be on the VPN, as an admin's is. When
the VPN address does not answer at all from here, those checks are "not checked" and say
so; when it answers but the service does not, they are No-Go.

A k3s that says it is a stand-in (``k3s --version``, as the tests' stand-in does) answers
from recorded objects, not from a running cluster: what it says can show a fault (No-Go)
but never prove health, so a check that would be Go says "not checked: k3s is a
stand-in" with its evidence.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from socle_cli.verify_core import (
    CheckResult,
    NotChecked,
    Verdict,
    VerifyContext,
    result,
    tcp_answers,
)

K3S = "/usr/local/bin/k3s"
API_PORT = 6443
INGRESS_PORT = 80
ALERTMANAGER_PORT = 9093
PROMETHEUS_PORT = 9090
POSTGRESQL_PORT = 5432
HTTP_TIMEOUT_S = 10
# Where `socle verify` writes and reads back its row (database `postgres`).
VERIFY_TABLE = "socle_verify"
KEPT_ROWS = 20


@dataclass(frozen=True)
class K3sIdentity:
    """What ``k3s --version`` says on the node."""

    version: str
    standin: bool
    line: str


def k3s_identity(ctx: VerifyContext) -> K3sIdentity:
    """The node's k3s (version, and whether it says it is a stand-in), read once per run."""

    def read() -> K3sIdentity:
        output = ctx.run(f"{K3S} --version 2>/dev/null || true", sudo=False).strip()
        if not output:
            raise NotChecked("k3s is not installed on the node (phase 3 not deployed)")
        line = output.splitlines()[0]
        words = line.split()
        version = words[2] if len(words) > 2 else "?"
        return K3sIdentity(version, "stand-in" in line, line)

    identity: K3sIdentity = ctx.cached("k3s_identity", read)
    return identity


def cluster_result(
    ctx: VerifyContext, phase: str, check: str, ok: bool, evidence: str, played: bool = False
) -> CheckResult:
    """Go or No-Go from what the cluster says; never Go when a stand-in said it."""
    if ok and (played or k3s_identity(ctx).standin):
        return CheckResult(phase, check, Verdict.NOT_CHECKED, f"k3s is a stand-in: {evidence}")
    return result(phase, check, ok, evidence)


def refuse_on_standin(ctx: VerifyContext, what: str) -> None:
    """``NotChecked`` when the node's k3s is a stand-in, in which ``what`` does not run."""
    if k3s_identity(ctx).standin:
        raise NotChecked(f"k3s is a stand-in: {what} does not run in it")


def vpn_unreachable(ctx: VerifyContext, service: str, port: int, why: str) -> Exception:
    """The error for a service that did not answer on the VPN address: "not checked" when
    nothing answers there from this machine (no VPN), else No-Go evidence."""
    address = ctx.vpn_address
    if not ctx.cached("vpn_reachable", lambda: tcp_answers(address, API_PORT)):
        return NotChecked(
            f"{address} does not answer from this machine (the API on {API_PORT} neither): "
            f"connect the VPN and run again ({service}: {why})"
        )
    return ServiceDown(f"{service} does not answer at {address}:{port}: {why}")


class ServiceDown(Exception):
    """A service on the VPN address does not answer while the address does."""


# phase 3 ----------------------------------------------------------------------------------


def check_k3s_node(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 3: node Ready with the pinned k3s."""
    from facts.k3s_state import K3sNodes
    from socle.versions import VersionsError, host_versions_file, load_versions

    identity = k3s_identity(ctx)
    try:
        pin = load_versions(host_versions_file(ctx.data)).k3s.version
    except VersionsError as error:
        raise NotChecked(f"cannot read the pinned version: {error}") from None
    nodes = ctx.fact(K3sNodes)
    if not nodes["api"]:
        yield result("3 k3s", "node Ready with the pinned k3s", False,
                     f"k3s {identity.version} is installed but its API does not answer: "
                     f"{nodes['error']}")  # fmt: skip
        return
    listed = nodes["nodes"]
    ok = bool(listed) and identity.version == pin and all(
        n["ready"] and n["version"] == pin for n in listed
    )
    seen = ", ".join(
        f"{n['name']} {'Ready' if n['ready'] else 'NOT Ready'} running {n['version']}"
        for n in listed
    ) or "no node"
    yield cluster_result(ctx, "3 k3s", "node Ready with the pinned k3s", ok,
                         f"{seen}; binary {identity.version}; pinned {pin}")  # fmt: skip


def check_test_ingress(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 3: the test ingress answers on port 80."""
    from socle.k3s_manifests import TEST_INGRESS_BODY
    from socle.k3s_plan import DEFAULT_TEST_INGRESS_HOST

    if not ctx.data.get("k3s_test_ingress"):
        raise NotChecked("the test ingress is not installed (k3s_test_ingress is off)")
    refuse_on_standin(ctx, "Traefik")
    host = str(ctx.data.get("k3s_test_ingress_host", DEFAULT_TEST_INGRESS_HOST))
    url = f"http://{ctx.public_address}:{INGRESS_PORT}/"
    request = urllib.request.Request(url, headers={"Host": host})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            status, body = response.status, response.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as error:
        status, body = error.code, ""
    except OSError as error:
        yield result("3 k3s", "test ingress answers", False, f"{url} (Host {host}): {error}")
        return
    took = time.monotonic() - started
    ok = status == 200 and TEST_INGRESS_BODY in body
    yield result("3 k3s", "test ingress answers", ok,
                 f"{url} with Host {host}: HTTP {status} in {took:.2f} s"
                 + ("" if ok else f", body {body[:80]!r}"))  # fmt: skip


def check_exposure(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 3: no unexpected public Service or host port."""
    from facts.k3s_state import K3sExposure
    from socle.exposure import Exposure, refused_exposures
    from socle.k3s_plan import allowed_exposures

    k3s_identity(ctx)
    found = ctx.fact(K3sExposure)
    if found["error"] is not None:
        raise NotChecked(f"cannot list the cluster's Services and Pods: {found['error']}")
    exposures = [Exposure.from_dict(e) for e in found["exposures"]]
    allowed = allowed_exposures(ctx.data.get("k3s_exposure_allowed"))
    refused = refused_exposures(exposures, allowed, ctx.vpn_address)
    if refused:
        yield result("3 k3s", "nothing public in the cluster", False,
                     "PUBLIC: " + "; ".join(e.describe() for e in refused))  # fmt: skip
        return
    shown = "; ".join(e.describe() for e in exposures) or "nothing opens a node port"
    yield cluster_result(ctx, "3 k3s", "nothing public in the cluster", True,
                         f"all allowed: {shown}")  # fmt: skip


# phase 4 ----------------------------------------------------------------------------------


def check_argocd(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 4: Argo CD's applications Synced and Healthy."""
    from facts.kube_objects import ArgoApplications
    from socle.cluster_manifests import ARGOCD_NAMESPACE

    k3s_identity(ctx)
    found = ctx.fact(ArgoApplications, namespace=ARGOCD_NAMESPACE)
    if found["error"] is not None:
        raise NotChecked(f"cannot list Argo CD's applications: {found['error']}")
    applications = found["applications"]
    if not applications:
        yield result("4 GitOps", "applications Synced and Healthy", False,
                     "Argo CD has no Application: run deploys/argocd.py")  # fmt: skip
        return
    wrong = [a for a in applications if (a["sync"], a["health"]) != ("Synced", "Healthy")]
    if wrong:
        evidence = "; ".join(f"{a['name']} {a['sync']}/{a['health']}" for a in wrong)
        yield result("4 GitOps", "applications Synced and Healthy", False,
                     f"{len(wrong)} of {len(applications)}: {evidence}")  # fmt: skip
        return
    names = ", ".join(sorted(a["name"] for a in applications))
    yield cluster_result(ctx, "4 GitOps", "applications Synced and Healthy", True,
                         f"{len(applications)} Synced and Healthy: {names}",
                         played=any(a["played"] for a in applications))  # fmt: skip


# phase 5 ----------------------------------------------------------------------------------


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        text: str = response.read().decode()
        return text


def notification_failures(alertmanager_url: str, prometheus_url: str | None) -> tuple[bool, str]:
    """Whether Alertmanager's notifications went out, and the evidence.

    Over the last 24 hours from Prometheus when it answers (``increase`` of Alertmanager's
    counters), else Alertmanager's own counters since it started.
    """
    import json

    from prometheus_client.parser import text_string_to_metric_families

    if prometheus_url is not None:
        try:
            totals = {}
            for name in ("alertmanager_notifications_failed_total",
                         "alertmanager_notifications_total"):  # fmt: skip
                query = urllib.parse.quote(f"sum by (integration) (increase({name}[24h]))")
                answer = json.loads(_get(f"{prometheus_url}/api/v1/query?query={query}"))
                totals[name] = {
                    item["metric"].get("integration", "?"): float(item["value"][1])
                    for item in answer["data"]["result"]
                }
            return _failures(totals["alertmanager_notifications_failed_total"],
                             totals["alertmanager_notifications_total"], "in the last 24 h")
        except (OSError, ValueError, KeyError):
            pass
    failed: dict[str, float] = {}
    sent: dict[str, float] = {}
    for family in text_string_to_metric_families(_get(f"{alertmanager_url}/metrics")):
        for sample in family.samples:
            integration = sample.labels.get("integration", "?")
            if sample.name == "alertmanager_notifications_failed_total":
                failed[integration] = failed.get(integration, 0.0) + sample.value
            elif sample.name == "alertmanager_notifications_total":
                sent[integration] = sent.get(integration, 0.0) + sample.value
    return _failures(failed, sent, "since Alertmanager started")


def _failures(failed: dict[str, float], sent: dict[str, float], when: str) -> tuple[bool, str]:
    integrations = sorted((set(failed) | set(sent)) - {"?"}) or sorted(set(failed) | set(sent))
    parts = [f"{name} {failed.get(name, 0):.0f} failed of {sent.get(name, 0):.0f}"
             for name in integrations if sent.get(name, 0) or failed.get(name, 0)]  # fmt: skip
    total = sum(failed.values())
    return total == 0, f"{', '.join(parts) or 'no notification'} {when}"


def send_test_alert(alertmanager_url: str, author: str) -> str:
    """Send SocleTestAlert and check that Alertmanager holds it; the evidence."""
    import json

    from socle.alertmanager_api import TEST_ALERT, AlertmanagerApi, manual_test_alert

    api = AlertmanagerApi(alertmanager_url)
    api.post_alerts([manual_test_alert(author)])
    matcher = urllib.parse.quote(f'alertname="{TEST_ALERT}"')
    held = json.loads(_get(f"{alertmanager_url}/api/v2/alerts?filter={matcher}"))
    if not held:
        raise ServiceDown(f"Alertmanager accepted {TEST_ALERT} but does not list it")
    return f"{TEST_ALERT} sent to {alertmanager_url} and held (level 1: a mail follows)"


def check_alertmanager(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 5: Alertmanager's notification failures, and a test alert sent."""
    import getpass
    import socket

    refuse_on_standin(ctx, "Alertmanager")
    address = ctx.vpn_address
    alertmanager = f"http://{address}:{ALERTMANAGER_PORT}"
    prometheus = f"http://{address}:{PROMETHEUS_PORT}"
    try:
        ok, evidence = notification_failures(alertmanager, prometheus)
    except (OSError, ValueError) as error:
        down = vpn_unreachable(ctx, "Alertmanager", ALERTMANAGER_PORT, str(error))
        if isinstance(down, NotChecked):
            raise down from None
        yield result("5 monitoring", "Alertmanager's notifications", False, str(down))
        return
    yield result("5 monitoring", "Alertmanager's notifications", ok, evidence)
    if not ctx.test_alert:
        yield CheckResult("5 monitoring", "test alert sent", Verdict.NOT_CHECKED,
                          "--no-test-alert given")  # fmt: skip
        return
    try:
        sent = send_test_alert(alertmanager, f"socle verify ({getpass.getuser()}@"
                                             f"{socket.gethostname()})")  # fmt: skip
    except Exception as error:  # noqa: BLE001 - the API's failure is the evidence
        yield result("5 monitoring", "test alert sent", False, f"{type(error).__name__}: {error}")
        return
    yield result("5 monitoring", "test alert sent", True, sent)


# phase 6 ----------------------------------------------------------------------------------


def postgresql_round_trip(host: str, port: int, password: str, user: str = "postgres") -> str:
    """Write a row into ``socle_verify`` (database ``postgres``), read it back on a new
    connection, keep the last few; the evidence. Raises psycopg's errors."""
    import psycopg

    token = secrets.token_hex(8)
    started = time.monotonic()
    settings: dict[str, Any] = {"host": host, "port": port, "user": user, "password": password,
                                "dbname": "postgres", "connect_timeout": 5}  # fmt: skip
    with psycopg.connect(**settings, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {VERIFY_TABLE} (id bigserial PRIMARY KEY, "
                     "token text NOT NULL, written timestamptz NOT NULL DEFAULT now())")
        conn.execute(f"INSERT INTO {VERIFY_TABLE} (token) VALUES (%s)", (token,))
        conn.execute(f"DELETE FROM {VERIFY_TABLE} WHERE id <= (SELECT max(id) FROM "
                     f"{VERIFY_TABLE}) - {KEPT_ROWS}")  # fmt: skip
    with psycopg.connect(**settings) as conn:
        row = conn.execute(
            f"SELECT token, written FROM {VERIFY_TABLE} WHERE token = %s", (token,)
        ).fetchone()
        version = conn.execute("SHOW server_version").fetchone()
    if row is None:
        raise ValueError(f"the row written to {VERIFY_TABLE} did not read back")
    took = time.monotonic() - started
    return (f"wrote and read back a row of postgres.{VERIFY_TABLE} at {host}:{port} "
            f"(PostgreSQL {version[0] if version else '?'}) in {took:.2f} s")


def check_postgresql(ctx: VerifyContext) -> Iterable[CheckResult]:
    """Phase 6: PostgreSQL write and read back over the VPN."""
    import psycopg

    from socle.gitops_values import sops_value
    from socle.inventory_checks import InventoryDataError
    from socle.sops_secrets import SopsError

    refuse_on_standin(ctx, "PostgreSQL")
    try:
        password = sops_value(ctx.data, "postgresql_credentials.password_sops")
    except (SopsError, InventoryDataError) as error:
        raise NotChecked(f"cannot read PostgreSQL's password from SOPS: {error}") from None
    try:
        evidence = postgresql_round_trip(ctx.vpn_address, POSTGRESQL_PORT, password)
    except psycopg.OperationalError as error:
        why = " ".join(str(error).split())[:200]
        down = vpn_unreachable(ctx, "PostgreSQL", POSTGRESQL_PORT, why)
        if isinstance(down, NotChecked):
            raise down from None
        yield result("6 PostgreSQL", "write and read back over the VPN", False, str(down))
        return
    except psycopg.Error as error:
        yield result("6 PostgreSQL", "write and read back over the VPN", False,
                     f"{type(error).__name__}: {' '.join(str(error).split())[:200]}")
        return
    yield result("6 PostgreSQL", "write and read back over the VPN", True, evidence)
