"""`socle dr-rehearsal` from a node A to a fresh host B, on test hosts.

A runs the whole platform (the stand-in k3s and the stand-in PostgreSQL on the node, as in
the other host tests); rows and a cluster object are written there before its last backup
and snapshot. The rehearsal provisions B, streams A's newest backups to it, restores k3s's
datastore and the database, and verifies B: the rows and the object read back on B, and
each step's time is in the report. A is left as it was.

Then A writes again, takes a backup and a snapshot that its agent sends off-site, and its
SSH server is stopped: the off-site rehearsal (``--backups offsite``) rebuilds B from A's
copies in the off-site repository, which B's agent lists and fetches itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.harness.hosts import Harness, TestHost
from tests.hosts.admin import socle_command
from tests.hosts.dr_pair import Pair, rehearsal_pair
from tests.hosts.k3s_node import (
    apply,
    config_map,
    kubectl_json,
)

pytestmark = pytest.mark.host

MARKER = "written-on-a-" + secrets.token_hex(4)
OFFSITE_MARKER = "sent-off-site-by-a-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def pair(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with rehearsal_pair(harness, tmp_path_factory.mktemp("dr")) as hosts:
        yield hosts


def psql(host: TestHost, sql: str) -> str:
    return host.exec(["runuser", "-u", "postgres", "--", "psql", "-tA", "-d", "app", "-c", sql]
                     ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def rehearsed(pair: Pair) -> tuple[int, str]:
    """A's rows and object written, then its backup and snapshot, then the rehearsal."""
    psql(pair.a, f"INSERT INTO orders (customer, total) VALUES ('{MARKER}', 42)")
    apply(pair.a, config_map(MARKER))
    pair.back_up_a()
    done = pair.rehearse("--target-seconds", "1800")
    kept = sorted((pair.workdir / "reports").glob(f"verify-dr-{pair.a.name}-to-{pair.b.name}-*.md"))
    assert kept and kept[-1].read_text() == done.stdout, done.stderr
    return done.returncode, done.stdout


def test_the_rehearsal_passes_within_its_target_and_times_each_step(
    rehearsed: tuple[int, str],
) -> None:
    code, report = rehearsed

    assert code == 0, report
    assert "**PASSED**: recovered in" in report
    for step in ("newest backups on A", "B provisioned", "backups copied from A to B",
                 "k3s datastore restored on B", "databases restored on B",
                 "B's own backups and drills", "socle verify on B"):
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


@pytest.fixture(scope="module")
def rehearsed_from_offsite(pair: Pair, rehearsed: tuple[int, str]) -> int:
    """After the first rehearsal: A writes again, its copies go off-site, A's SSH is
    stopped, and B is rebuilt from the off-site repository."""
    psql(pair.a, f"INSERT INTO orders (customer, total) VALUES ('{OFFSITE_MARKER}', 7)")
    apply(pair.a, config_map(OFFSITE_MARKER))
    pair.back_up_a(offsite=True)
    pair.a.exec("systemctl stop ssh.socket ssh.service", check=False)
    return pair.rehearse("--backups", "offsite", "--target-seconds", "1800").returncode


def test_the_offsite_rehearsal_rebuilds_b_from_as_copies_without_reaching_a(
    pair: Pair, rehearsed_from_offsite: int
) -> None:
    kept = sorted((pair.workdir / "reports").glob(f"verify-dr-{pair.a.name}-to-{pair.b.name}-*.md"))
    report = kept[-1].read_text()

    assert rehearsed_from_offsite == 0, report
    assert "A's copies in the off-site repository (A not contacted)" in report
    for step in ("B provisioned", "newest off-site copies of A", "k3s datastore restored on B",
                 "databases restored on B", "B's own backups and drills", "socle verify on B"):
        assert f"| {step}" in report and "FAILED" not in report
    assert pair.a.exec("systemctl is-active ssh.service", check=False).stdout.strip() != "active"
    assert psql(pair.b, f"SELECT total FROM orders WHERE customer = '{OFFSITE_MARKER}'") == "7.00"
    names = [i["metadata"]["name"] for i in kubectl_json(pair.b, "get", "configmaps",
                                                           "-n", "default")["items"]]  # fmt: skip
    assert OFFSITE_MARKER in names
