"""The daemon, run for real as `socle-agent run` with a systemd-like notify socket."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
from pathlib import Path

from socle_agent import catalogue
from socle_agent.config import load_config
from socle_agent.daemon import Daemon
from socle_agent.state import load_state, save_state

from tests.agent.conftest import (
    Notifications,
    PgCluster,
    config_text,
    free_port,
    partial_dump_growing,
    running_agent,
    scrape,
    start_agent,
    wait_for,
    write_config,
)
from tests.standins.k3s_datastore import create_datastore, make_server_dir


def test_run_catches_up_serves_metrics_pings_watchdog_and_stops_on_sigterm(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path,
    notifications: Notifications
) -> None:
    port = free_port()
    text = config_text(tmp_path, pg, pg_password_file, metrics_port=port)
    text += '\n[schedule]\npostgres_backup = "daily at 00:00"\ndisk_check = "every 1 second"\n'
    config_path = write_config(tmp_path, text)
    config = load_config(config_path)
    with running_agent(config_path, notifications) as agent:
        wait_for(lambda: notifications.seen("READY=1"))
        state = wait_for(lambda: load_state(config.agent.state_file).get("jobs", {})
                         .get("postgres_backup", {}).get("status") and
                         load_state(config.agent.state_file))
        assert state["jobs"]["postgres_backup"]["status"] == "ok"
        wait_for(lambda: "disk_check" in load_state(config.agent.state_file)["jobs"])
        [backup] = catalogue.list_backups(config.agent.backup_dir)
        metrics = scrape(port)
        job = (("task", "postgres_backup"),)
        assert metrics[("socle_job_last_status", job)] == 1
        assert metrics[("socle_job_last_size_bytes", job)] == backup.manifest.size_bytes
        assert metrics[("socle_job_last_success_timestamp_seconds", job)] == (
            state["jobs"]["postgres_backup"]["last_success"])
        assert metrics[("socle_job_failures_total", job)] == 0
        assert metrics[("socle_backup_retained", (("kind", "postgres"),))] == 1
        assert metrics[("socle_job_last_status", (("task", "disk_check"),))] == 1
        wait_for(lambda: notifications.seen("WATCHDOG=1"))
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
    assert "STOPPING=1" in notifications.drain()
    _, stderr = agent.communicate()
    assert "postgres_backup: missed while the agent was down, running now" in stderr


def test_run_with_k3s_jobs_scheduled_snapshots_and_drills_at_start(
    tmp_path: Path, notifications: Notifications
) -> None:
    server_dir = tmp_path / "k3s" / "server"
    config_file = tmp_path / "k3s" / "config.yaml"
    create_datastore(server_dir / "db" / "state.db", rows=500)
    make_server_dir(server_dir, config_file)
    port = free_port()
    text = config_text(tmp_path, metrics_port=port) + f"""
[k3s]
server_dir = "{server_dir}"
config_file = "{config_file}"

[schedule]
k3s_snapshot = "every 6 hours"
k3s_drill = "weekly on sunday at 05:00"
"""
    config_path = write_config(tmp_path, text)
    config = load_config(config_path)
    with running_agent(config_path, notifications) as agent:
        wait_for(lambda: "k3s" in load_state(config.agent.state_file).get("drills", {}))
        metrics = scrape(port)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
    _, stderr = agent.communicate()
    assert "k3s_snapshot: missed while the agent was down, running now" in stderr
    [backup] = catalogue.list_backups(config.agent.backup_dir, "k3s")
    assert backup.manifest.details["verified"]
    kind = (("kind", "k3s"),)
    assert metrics[("socle_drill_last_result", kind)] == 1
    newest = (("kind", "k3s"), ("subject", "k3s"))
    assert metrics[("socle_backup_newest_timestamp_seconds", newest)] == backup.manifest.finished
    assert metrics[("socle_job_last_status", (("task", "k3s_snapshot"),))] == 1
    assert metrics[("socle_job_last_status", (("task", "k3s_drill"),))] == 1
    assert metrics[("socle_k3s_datastore_bytes", (("file", "state.db"),))] == (
        server_dir / "db" / "state.db").stat().st_size


def test_sigterm_during_a_dump_aborts_it_cleanly(
    tmp_path: Path, pg: PgCluster, big_db: str, pg_password_file: Path,
    notifications: Notifications
) -> None:
    text = config_text(tmp_path, pg, pg_password_file, databases=("big",))
    text = text.replace("bin_dir", "compression = 9\nbin_dir")
    text += '\n[schedule]\npostgres_backup = "every 1 hour"\n'
    config_path = write_config(tmp_path, text)
    config = load_config(config_path)
    with running_agent(config_path, notifications) as agent:
        wait_for(lambda: partial_dump_growing(config.agent.backup_dir), timeout=120)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
    _, stderr = agent.communicate()
    assert "postgres_backup: aborted" in stderr
    assert list((config.agent.backup_dir / "postgres").iterdir()) == []
    assert "postgres_backup" not in load_state(config.agent.state_file).get("jobs", {})
    leftover = subprocess.run(["pgrep", "-f", f"pg_dump.*{pg.port}"], capture_output=True)
    assert leftover.returncode == 1, "pg_dump was left running"


def test_run_with_partial_config_refuses_to_start(
    tmp_path: Path, notifications: Notifications
) -> None:
    path = write_config(tmp_path, config_text(tmp_path) + '\n[schedule]\nprune = "daily at')
    agent = start_agent(path, notifications)
    _, stderr = agent.communicate(timeout=60)
    assert agent.returncode == 2
    assert "not valid TOML" in stderr and str(path) in stderr
    assert "READY=1" not in notifications.drain()


def test_run_with_wrong_key_refuses_to_start_naming_it(
    tmp_path: Path, notifications: Notifications
) -> None:
    text = config_text(tmp_path) + '\n[schedule]\nprune = "daily at 02:30"\n'
    path = write_config(tmp_path, text.replace("keep_last = 2", 'keep_last = "two"'))
    agent = start_agent(path, notifications)
    _, stderr = agent.communicate(timeout=60)
    assert agent.returncode == 2
    assert "retention.keep_last: expected an integer, got 'two'" in stderr


def test_due_at_start_lists_jobs_missed_since_their_last_success(tmp_path: Path) -> None:
    text = config_text(tmp_path) + (
        '\n[schedule]\nprune = "daily at 06:00"\ndisk_check = "every 15 minutes"\n')
    config = load_config(write_config(tmp_path, text))
    now = dt.datetime(2026, 11, 26, 9, 0)
    daemon = Daemon(config)
    assert daemon.due_at_start(now) == ["disk_check", "prune"]
    save_state(config.agent.state_file, {"jobs": {
        "prune": {"last_success": dt.datetime(2026, 11, 26, 6, 1).timestamp()},
        "disk_check": {"last_success": dt.datetime(2026, 11, 26, 8, 40).timestamp()},
    }})
    assert daemon.due_at_start(now) == ["disk_check"]
    assert daemon.due_at_start(dt.datetime(2026, 11, 26, 8, 50)) == []
