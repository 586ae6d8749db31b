"""Nothing waits past its deadline: a cluster that never answers, a table lock the dump and
the row count wait on, a cluster not there yet. Each ends as a failed job, in bounded time,
and the agent goes on."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from socle_agent.config import load_config
from socle_agent.jobs import run_job
from socle_agent.state import load_state

from tests.agent.conftest import (
    AGENT,
    Notifications,
    PgCluster,
    config_text,
    free_port,
    running_agent,
    scrape,
    wait_for,
    write_config,
)
from tests.standins.silent_api import SilentApi

KUBERNETES = """
[postgres.kubernetes]
service = "postgresql"
secret = "postgresql-credentials"
namespace = "database"
kubeconfig = "{kubeconfig}"
"""


def cluster_config(tmp_path: Path, kubeconfig: Path, metrics_port: int | None = None) -> Path:
    text = config_text(tmp_path, metrics_port=metrics_port) + """
[postgres]
databases = ["app"]
connect_attempts = 1
""" + KUBERNETES.format(kubeconfig=kubeconfig)
    text = text.replace('log_level = "DEBUG"', 'log_level = "DEBUG"\nnetwork_timeout_seconds = 1')
    return write_config(tmp_path, text)


def test_a_cluster_that_never_answers_fails_the_backup_within_the_network_timeout(
    tmp_path: Path,
) -> None:
    with SilentApi() as api:
        config = load_config(cluster_config(tmp_path, api.kubeconfig(tmp_path / "kubeconfig")))
        started = time.monotonic()
        result = run_job("postgres_backup", config)
        took = time.monotonic() - started
        assert api.accepted, "the agent never reached the stand-in"
    assert result.status == "failed"
    assert "the Kubernetes API did not answer for database/postgresql within 1 s" in result.error
    # four tries (urllib3's default) of one second each, twice at most; far below a hang
    assert took < 30


def test_without_its_kubeconfig_yet_the_agent_starts_and_reports_the_backup_failing(
    tmp_path: Path, notifications: Notifications
) -> None:
    # A first deploy: the configuration names the kubeconfig, no deploy has written it yet.
    missing = tmp_path / "agent-kubeconfig"
    port = free_port()
    path = cluster_config(tmp_path, missing, metrics_port=port)
    path.write_text(path.read_text() + '\n[schedule]\npostgres_backup = "daily at 02:30"\n')
    check = subprocess.run([AGENT, "--config", str(path), "check-config"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    state_file = load_config(path).agent.state_file
    with running_agent(path, notifications) as daemon:
        wait_for(lambda: notifications.seen("READY=1"))
        record = wait_for(lambda: load_state(state_file).get("jobs", {}).get("postgres_backup"))
        metrics = scrape(port)
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    assert record["status"] == "failed"
    assert f"no kubeconfig at {missing} yet" in record["error"]
    assert metrics[("socle_job_last_status", (("task", "postgres_backup"),))] == 0


def test_a_kubeconfig_with_a_token_that_others_may_read_is_refused(tmp_path: Path) -> None:
    with SilentApi() as api:
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    kubeconfig.chmod(0o644)
    check = subprocess.run([AGENT, "--config", str(cluster_config(tmp_path, kubeconfig)),
                            "check-config"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 2
    assert "postgres.kubernetes.kubeconfig: " in check.stderr
    assert "holds a token but others may read it (mode 0644)" in check.stderr


@pytest.fixture()
def locked_orders(pg: PgCluster, shop_db: str) -> Iterator[None]:
    """An open transaction holding an exclusive lock on shop's orders table."""
    with psycopg.connect(host=str(pg.socket_dir), port=pg.port, user=pg.user,
                         dbname=shop_db) as holder:
        holder.execute("lock table orders in access exclusive mode")
        yield
        holder.rollback()


def lock_config(tmp_path: Path, pg: PgCluster, password_file: Path, extra: str) -> Path:
    text = config_text(tmp_path, pg, password_file)
    return write_config(tmp_path, text.replace("bin_dir", extra + "\nbin_dir"))


def no_pg_dump_left(pg: PgCluster) -> bool:
    return subprocess.run(["pgrep", "-f", f"pg_dump.*{pg.port}"],
                          capture_output=True).returncode == 1


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        # pg_dump waits for its table locks with a statement timeout, the row count with
        # lock_timeout: whichever gives up first names its own
        ("lock_timeout_seconds = 1", r"canceling statement due to (lock|statement) timeout"),
        # a lock held longer than the whole job may last: the job's deadline ends it, or
        # the statement timeout derived from it, whichever notices first
        ("timeout_seconds = 3", r"ran past its deadline|due to statement timeout"),
    ],
)
def test_a_table_lock_ends_the_dump_in_bounded_time_leaving_nothing(
    tmp_path: Path, pg: PgCluster, pg_password_file: Path, locked_orders: None,
    setting: str, said: str,
) -> None:
    config = load_config(lock_config(tmp_path, pg, pg_password_file, setting))
    started = time.monotonic()
    result = run_job("postgres_backup", config)
    assert result.status == "failed"
    assert re.search(said, result.error), result.error
    assert time.monotonic() - started < 20
    assert not list((config.agent.backup_dir / "postgres").glob("*"))
    wait_for(lambda: no_pg_dump_left(pg), timeout=10)
