"""`socle verify`'s checks of phases 3 to 6: Go, No-Go, and never Go from a stand-in.

The node is a fake session answering what the checks ask (`k3s --version`, the facts);
PostgreSQL is a real server (tests/agent/pgcluster.py) reached on the loopback address
standing for the VPN address. Alertmanager's part runs against the real one in
tests/gitops/test_alert_path.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from socle_cli import verify_cluster
from socle_cli.verify_cluster import (
    check_alertmanager,
    check_argocd,
    check_exposure,
    check_k3s_node,
    check_postgresql,
    check_test_ingress,
    postgresql_round_trip,
)
from socle_cli.verify_core import CheckResult, Verdict, VerifyContext, run_checks
from tests.agent.conftest import make_cluster
from tests.agent.pgcluster import PgCluster
from tests.socle_cli.fake_node import FakeNode
from tests.sops_files import write_sops_file
from tests.standins.k3s_build import make_release, write_versions_file

PIN = "v1.33.2+k3s1"
READY = {"api": True, "error": None, "nodes": [{"name": "vps", "ready": True, "version": PIN}]}
TRAEFIK = [{"kind": "Service", "namespace": "kube-system", "name": "traefik",
            "how": "LoadBalancer", "ports": [80, 443], "carries": None, "addresses": []},
           {"kind": "Service", "namespace": "monitoring", "name": "kps-grafana",
            "how": "externalIPs", "ports": [3000], "carries": None,
            "addresses": ["10.8.0.1"]}]  # fmt: skip
SYNCED: dict[str, Any] = {"error": None, "applications": [
    {"name": "socle-root", "sync": "Synced", "health": "Healthy", "played": False},
    {"name": "argocd", "sync": "Synced", "health": "Healthy", "played": False}]}  # fmt: skip


@pytest.fixture(scope="module")
def versions_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("versions")
    return write_versions_file(work / "versions.toml", make_release(PIN, work))


def context(versions_file: Path, version_line: str = f"k3s version {PIN} (abc)",
            **facts: Any) -> VerifyContext:
    answers = {"K3sNodes": READY, "K3sExposure": {"error": None, "exposures": TRAEFIK},
               "ArgoApplications": SYNCED, **facts}  # fmt: skip
    data = {"wireguard_address": "10.8.0.1/24", "socle_versions_file": str(versions_file)}
    return VerifyContext("vps", data, FakeNode(version_line, answers))  # type: ignore[arg-type]


def verdicts(results: list[CheckResult]) -> list[tuple[str, Verdict]]:
    return [(r.check, r.verdict) for r in results]


def cluster_checks(ctx: VerifyContext) -> list[CheckResult]:
    return run_checks(ctx, [("3", check_k3s_node), ("3", check_exposure), ("4", check_argocd)])


def test_a_healthy_cluster_is_go_with_its_evidence(versions_file: Path) -> None:
    results = cluster_checks(context(versions_file))

    assert verdicts(results) == [("node Ready with the pinned k3s", Verdict.GO),
                                 ("nothing public in the cluster", Verdict.GO),
                                 ("applications Synced and Healthy", Verdict.GO)]  # fmt: skip
    assert results[0].evidence == f"vps Ready running {PIN}; binary {PIN}; pinned {PIN}"
    assert "externalIPs 3000 on 10.8.0.1" in results[1].evidence
    assert results[2].evidence == "2 Synced and Healthy: argocd, socle-root"


def test_a_stand_in_never_makes_a_go_but_its_faults_are_no_go(versions_file: Path) -> None:
    leak = {"kind": "Service", "namespace": "web", "name": "leaky", "how": "NodePort",
            "ports": [30080], "carries": None, "addresses": []}  # fmt: skip
    standin = f"k3s version {PIN} (stand-in)"

    healthy = cluster_checks(context(versions_file, standin))
    leaking = cluster_checks(context(versions_file, standin, K3sExposure={
        "error": None, "exposures": [*TRAEFIK, leak]}))

    assert {r.verdict for r in healthy} == {Verdict.NOT_CHECKED}
    assert all(r.evidence.startswith("k3s is a stand-in: ") for r in healthy)
    assert verdicts(leaking)[1] == ("nothing public in the cluster", Verdict.NO_GO)
    assert "PUBLIC: Service leaky in namespace web: NodePort 30080" in leaking[1].evidence


def test_statuses_a_stand_in_played_are_not_go_even_on_a_real_k3s(versions_file: Path) -> None:
    played = {"error": None, "applications": [
        {"name": "argocd", "sync": "Synced", "health": "Healthy", "played": True}]}

    [result] = run_checks(context(versions_file, ArgoApplications=played), [("4", check_argocd)])

    assert result.verdict is Verdict.NOT_CHECKED


@pytest.mark.parametrize(
    ("facts", "version_line", "evidence"),
    [
        ({}, "k3s version v1.33.1+k3s1 (abc)", f"binary v1.33.1+k3s1; pinned {PIN}"),
        ({"K3sNodes": {"api": True, "error": None, "nodes": [
            {"name": "vps", "ready": False, "version": PIN}]}}, None, "vps NOT Ready"),
        ({"K3sNodes": {"api": False, "error": "connection refused", "nodes": []}}, None,
         "its API does not answer: connection refused"),
    ],
)  # fmt: skip
def test_a_node_not_ready_or_off_the_pin_is_no_go(
    versions_file: Path, facts: dict[str, Any], version_line: str | None, evidence: str
) -> None:
    ctx = context(versions_file, version_line or f"k3s version {PIN} (abc)", **facts)

    [result] = run_checks(ctx, [("3", check_k3s_node)])

    assert result.verdict is Verdict.NO_GO
    assert evidence in result.evidence


def test_applications_out_of_sync_or_degraded_are_no_go(versions_file: Path) -> None:
    apps = {"error": None, "applications": [
        *SYNCED["applications"],
        {"name": "postgresql", "sync": "OutOfSync", "health": "Degraded", "played": False}]}

    [result] = run_checks(context(versions_file, ArgoApplications=apps), [("4", check_argocd)])

    assert result.verdict is Verdict.NO_GO
    assert result.evidence == "1 of 3: postgresql OutOfSync/Degraded"


def test_what_the_stand_in_cannot_run_is_not_checked_and_says_why(versions_file: Path) -> None:
    ctx = context(versions_file, f"k3s version {PIN} (stand-in)")
    ctx.data["k3s_test_ingress"] = True

    results = run_checks(ctx, [("3", check_test_ingress), ("5", check_alertmanager),
                               ("6", check_postgresql)])  # fmt: skip

    assert [r.evidence for r in results] == [
        "k3s is a stand-in: Traefik does not run in it",
        "k3s is a stand-in: Alertmanager does not run in it",
        "k3s is a stand-in: PostgreSQL does not run in it",
    ]
    assert {r.verdict for r in results} == {Verdict.NOT_CHECKED}


def test_without_k3s_the_cluster_is_not_checked(versions_file: Path) -> None:
    ctx = context(versions_file, "")

    results = cluster_checks(ctx)

    assert {r.verdict for r in results} == {Verdict.NOT_CHECKED}
    assert results[0].evidence == "k3s is not installed on the node (phase 3 not deployed)"


# PostgreSQL over the "VPN" (the loopback address here) ------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[PgCluster]:
    cluster = make_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


def listening(port: int) -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    return server


def postgresql_context(
    versions_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str,
    port: int,
) -> VerifyContext:
    sops_file, key_file = write_sops_file(tmp_path, {"postgresql_password": password})
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    monkeypatch.setattr(verify_cluster, "POSTGRESQL_PORT", port)
    ctx = context(versions_file)
    ctx.data.update({"wireguard_address": "127.0.0.1/8", "postgresql_credentials": {
        "password_sops": {"file": str(sops_file), "key": "postgresql_password"}}})
    return ctx


def test_postgresql_writes_and_reads_back_a_row(
    database: PgCluster, versions_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = postgresql_context(versions_file, tmp_path, monkeypatch, database.password,
                             database.port)

    [result] = run_checks(ctx, [("6", check_postgresql)])
    again = postgresql_round_trip("127.0.0.1", database.port, database.password)

    assert result.verdict is Verdict.GO, result.evidence
    assert result.evidence.startswith("wrote and read back a row of postgres.socle_verify at "
                                      f"127.0.0.1:{database.port} (PostgreSQL 15.")
    assert "read back" in again
    kept = database.psql("SELECT count(*) FROM socle_verify", "postgres").strip()
    assert kept == "2"


def test_a_refused_login_is_no_go_and_no_vpn_is_not_checked(
    database: PgCluster, versions_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = postgresql_context(versions_file, tmp_path, monkeypatch, "not-the-password",
                             database.port)
    # The VPN address answers (an API stands on it) but PostgreSQL refuses the login.
    api = listening(0)
    monkeypatch.setattr(verify_cluster, "API_PORT", api.getsockname()[1])
    try:
        [refused] = run_checks(ctx, [("6", check_postgresql)])
    finally:
        api.close()
    ctx.cache.clear()
    [no_vpn] = run_checks(ctx, [("6", check_postgresql)])

    assert refused.verdict is Verdict.NO_GO
    assert "PostgreSQL does not answer at 127.0.0.1" in refused.evidence
    assert "password authentication failed" in refused.evidence
    assert no_vpn.verdict is Verdict.NOT_CHECKED
    assert "does not answer from this machine" in no_vpn.evidence
    assert "connect the VPN" in no_vpn.evidence


# The test ingress through Traefik (a local HTTP server standing for it) -------------------


def test_the_test_ingress_is_go_only_when_it_answers_its_page_for_its_host(
    versions_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pages = {"test-ingress.socle.invalid": b"socle test ingress\n"}

    class Traefik(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            page = pages.get(self.headers["Host"])
            self.send_response(200 if page else 404)
            self.end_headers()
            self.wfile.write(page or b"404 page not found")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Traefik)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(verify_cluster, "INGRESS_PORT", server.server_address[1])
    ctx = context(versions_file)
    ctx.data.update({"ssh_hostname": "127.0.0.1", "k3s_test_ingress": True})
    try:
        [answered] = run_checks(ctx, [("3", check_test_ingress)])
        ctx.data["k3s_test_ingress_host"] = "other.socle.invalid"
        [other_host] = run_checks(ctx, [("3", check_test_ingress)])
    finally:
        server.shutdown()
        server.server_close()
    [nothing] = run_checks(ctx, [("3", check_test_ingress)])

    assert answered.verdict is Verdict.GO
    assert "with Host test-ingress.socle.invalid: HTTP 200" in answered.evidence
    assert other_host.verdict is Verdict.NO_GO and "HTTP 404" in other_host.evidence
    assert nothing.verdict is Verdict.NO_GO and "Connection refused" in nothing.evidence
