"""`socle dr-rehearsal` from a node A to a fresh host B, on test hosts.

A runs the whole platform (the stand-in k3s and the stand-in PostgreSQL on the node, as in
the other host tests); rows and a cluster object are written there before its last backup
and snapshot. The rehearsal provisions B, streams A's newest backups to it, restores k3s's
datastore and the database, and verifies B: the rows and the object read back on B, and
each step's time is in the report. A is left as it was.
"""

from __future__ import annotations

import copy
import runpy
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from socle.wireguard_keys import generate_private_key
from tests.harness.hosts import REPO_ROOT, Harness, TestHost
from tests.hosts.admin import install_client_config, new_admin_key, socle_command
from tests.hosts.k3s_node import (
    apply,
    config_map,
    k3s_node_data,
    kubectl_json,
    standin_k3s_data,
)
from tests.sops_files import write_sops_file

pytestmark = pytest.mark.host

MARKER = "written-on-a-" + secrets.token_hex(4)


@dataclass
class Pair:
    harness: Harness
    a: TestHost
    b: TestHost
    admin: TestHost
    hosts_file: Path
    workdir: Path


def agent_settings() -> dict[str, object]:
    """The test hosts' agent (the stand-in PostgreSQL) plus k3s snapshots and drills."""
    settings = copy.deepcopy(
        runpy.run_path(str(REPO_ROOT / "inventories" / "group_data" / "test.py"))["agent_settings"]
    )
    settings["schedule"].update({"k3s_snapshot": "every 6 hours",
                                 "k3s_drill": "weekly on sunday at 05:00"})  # fmt: skip
    return settings


@pytest.fixture(scope="module")
def pair(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("dr")
    a, b = harness.start("dr-a"), harness.start("dr-b")
    admin = harness.start("dr-admin")
    password = secrets.token_urlsafe(18)
    server_key = generate_private_key()
    sops_file, age_key = write_sops_file(
        workdir, {"postgres_password": password, "wireguard_private_key": server_key}
    )
    admin_key, admin_public = new_admin_key(workdir)
    k3s = standin_k3s_data(workdir)
    common = {
        "k3s_airgap_dir": k3s["k3s_airgap_dir"],
        "agent_settings": agent_settings(),
        "agent_secrets": [{"path": "/etc/socle/postgres-password", "sops_file": str(sops_file),
                           "key": "postgres_password"}],
        "standin_postgres_password": password,
        "wireguard_private_key_sops": str(sops_file),
    }  # fmt: skip
    versions = Path(k3s["socle_versions_file"])
    data = {host.name: k3s_node_data(admin_public, versions, **common) for host in (a, b)}
    hosts_file = harness.write_hosts_file(workdir / "hosts.json", [a, b], data=data)
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("SOPS_AGE_KEY_FILE", str(age_key))
        for deploy in ("tests/hosts/deploys/postgres_standin.py", "deploys/all.py"):
            harness.run_pyinfra(hosts_file, deploy, "--limit", a.name)
        # B's PostgreSQL: in production the cluster's, here the stand-in, fresh and empty of
        # A's rows. B is otherwise untouched until the rehearsal.
        harness.run_pyinfra(hosts_file, "tests/hosts/deploys/postgres_standin.py",
                            "--limit", b.name)  # fmt: skip
        # The admin's client knows B already: B takes the server key from SOPS, as a
        # rebuilt node does, so the admins' configurations keep working.
        config = socle_command(hosts_file, "wireguard", "client-config", "--inventory",
                               "inventories/test.py", "--host", b.name, "--peer", "admin",
                               "--private-key-file", str(admin_key))  # fmt: skip
        assert config.returncode == 0, config.stderr
        install_client_config(admin, config.stdout)
        yield Pair(harness, a, b, admin, hosts_file, workdir)
    for host in (admin, b, a):
        harness.remove(host)


def psql(host: TestHost, sql: str) -> str:
    return host.exec(["runuser", "-u", "postgres", "--", "psql", "-tA", "-d", "app", "-c", sql]
                     ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def rehearsed(pair: Pair) -> tuple[int, str]:
    """A's rows and object written, then its backup and snapshot, then the rehearsal."""
    psql(pair.a, f"INSERT INTO orders (customer, total) VALUES ('{MARKER}', 42)")
    apply(pair.a, config_map(MARKER))
    for job in ("backup postgres", "snapshot k3s"):
        pair.a.ssh(f"sudo socle-agent {job}")
    reports = pair.workdir / "reports"
    done = socle_command(
        pair.hosts_file, "dr-rehearsal", "--from", "inventories/test.py", "--from-host",
        pair.a.name, "--to", "inventories/test.py", "--to-host", pair.b.name,
        "--target-seconds", "1800", "--report-dir", str(reports), "--yes",
    )  # fmt: skip
    kept = sorted(reports.glob(f"verify-dr-{pair.a.name}-to-{pair.b.name}-*.md"))
    assert kept and kept[-1].read_text() == done.stdout, done.stderr
    return done.returncode, done.stdout


def test_the_rehearsal_passes_within_its_target_and_times_each_step(
    rehearsed: tuple[int, str],
) -> None:
    code, report = rehearsed

    assert code == 0, report
    assert "**PASSED**: recovered in" in report
    for step in ("newest backups on A", "B provisioned", "backups copied from A to B",
                 "k3s datastore restored on B", "databases restored on B", "socle verify on B"):
        assert f"| {step}" in report and "FAILED" not in report
    assert "## socle verify on dr-b" in report


def test_rows_written_on_a_before_its_last_backup_read_back_on_b(
    pair: Pair, rehearsed: tuple[int, str]
) -> None:
    assert psql(pair.b, f"SELECT total FROM orders WHERE customer = '{MARKER}'") == "42.00"
    count = "SELECT count(*) FROM orders"
    assert psql(pair.b, count) == psql(pair.a, count)


def test_the_cluster_object_written_on_a_is_back_on_b(
    pair: Pair, rehearsed: tuple[int, str]
) -> None:
    names = [i["metadata"]["name"] for i in kubectl_json(pair.b, "get", "configmaps",
                                                           "-n", "default")["items"]]  # fmt: skip
    assert MARKER in names


def test_the_same_host_is_refused_before_anything_happens(pair: Pair) -> None:
    done = socle_command(pair.hosts_file, "dr-rehearsal", "--from", "inventories/test.py",
                         "--from-host", pair.a.name, "--to", "inventories/test.py",
                         "--to-host", pair.a.name, "--yes")  # fmt: skip

    assert done.returncode == 2
    assert "would replace the live data it restores from" in done.stderr
