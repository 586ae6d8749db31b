"""A third source, added as one module under tests/ and nothing else: it runs through the
command line, the daemon and the metrics like the built-in ones. The same source, told
to hang, shows the daemon's watchdog reporting a stuck job and restarting the agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from socle_agent.config import load_config
from socle_agent.state import load_state

from tests.agent.conftest import (
    AGENT,
    Mailbox,
    Notifications,
    config_text,
    free_port,
    mail_toml,
    running_agent,
    scrape,
    wait_for,
    write_config,
)
from tests.agent.notes_source import install_notes_plugin

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def plugin_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The notes plug-in installed: on sys.path here, on PYTHONPATH for agent processes."""
    site = install_notes_plugin(tmp_path / "site")
    sys.path.insert(0, str(site))
    try:
        yield dict(os.environ, PYTHONPATH=f"{site}:{REPO}")
    finally:
        sys.path.remove(str(site))


@pytest.fixture()
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "monday.txt").write_text("buy bread\n")
    (folder / "tuesday.txt").write_text("call the bank\n")
    return folder


def notes_config(tmp_path: Path, notes: Path, extra: str = "",
                 metrics_port: int | None = None) -> Path:
    text = config_text(tmp_path, metrics_port=metrics_port) + f"""
[notes]
folder = "{notes}"

[drill]
rpo_seconds = {{ notes = 3600 }}
""" + extra
    return write_config(tmp_path, text)


def agent(env: dict[str, str], config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_a_plugin_source_runs_through_the_command_line(
    tmp_path: Path, notes: Path, plugin_env: dict[str, str]
) -> None:
    config = notes_config(tmp_path, notes)

    assert agent(plugin_env, config, "check-config").returncode == 0
    backup = agent(plugin_env, config, "backup", "notes", "--only", "monday.txt")
    assert backup.returncode == 0, backup.stderr
    assert "(1 notes)" in backup.stdout
    listed = agent(plugin_env, config, "list", "--kind", "notes").stdout.splitlines()
    backup_id = listed[1].split()[0]
    assert backup_id.startswith("notes-") and " notes " in listed[1]
    drill = agent(plugin_env, config, "drill", "notes")
    assert drill.returncode == 0 and "passed" in drill.stdout
    restored = agent(plugin_env, config, "restore", "notes", "--backup", backup_id,
                     "--into", str(tmp_path / "back"))
    assert restored.returncode == 0, restored.stderr
    assert (tmp_path / "back" / "monday.txt").read_text() == "buy bread\n"
    again = agent(plugin_env, config, "restore", "notes", "--backup", backup_id,
                  "--into", str(tmp_path / "back"))
    assert again.returncode == 3 and "exists; refusing" in again.stderr
    assert "notes" in agent(plugin_env, config, "backup", "--help").stdout


def test_a_plugin_source_is_scheduled_by_the_daemon_and_exported_as_metrics(
    tmp_path: Path, notes: Path, plugin_env: dict[str, str], notifications: Notifications
) -> None:
    port = free_port()
    path = notes_config(tmp_path, notes, '\n[schedule]\nnotes_backup = "every 1 hour"\n',
                        metrics_port=port)
    state_file = load_config(path).agent.state_file
    with running_agent(path, notifications, env=plugin_env) as daemon:
        wait_for(lambda: load_state(state_file).get("backups", {}).get("notes"))
        metrics = scrape(port)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    subject = (("kind", "notes"), ("subject", "notes"))
    assert metrics[("socle_job_last_status", (("task", "notes_backup"),))] == 1
    assert metrics[("socle_backup_expected", subject)] == 1
    assert metrics[("socle_backup_newest_timestamp_seconds", subject)] > 0
    assert metrics[("socle_rpo_target_seconds", (("kind", "notes"),))] == 3600
    assert metrics[("socle_notes_files", ())] == 2


def test_a_job_that_stops_showing_progress_is_reported_and_the_agent_restarted(
    tmp_path: Path, notes: Path, plugin_env: dict[str, str], notifications: Notifications,
    smtp: Mailbox,
) -> None:
    path = notes_config(tmp_path, notes, '\n[schedule]\nnotes_backup = "every 1 hour"\n'
                        + mail_toml(smtp))
    text = path.read_text().replace(f'folder = "{notes}"', f'folder = "{notes}"\nhang = true')
    text = text.replace('log_level = "DEBUG"',
                        'log_level = "DEBUG"\nstall_seconds = 2\nnetwork_timeout_seconds = 1')
    path.write_text(text)
    state_file = load_config(path).agent.state_file
    with running_agent(path, notifications, env=plugin_env) as daemon:
        assert daemon.wait(timeout=60) == 70
    received = notifications.drain()
    assert "WATCHDOG=trigger" in received
    assert received.index("WATCHDOG=trigger") > max(
        i for i, m in enumerate(received) if m == "WATCHDOG=1")
    record = load_state(state_file)["jobs"]["notes_backup"]
    assert record["status"] == "failed"
    assert record["error"].startswith("stuck: no progress for 2 s while starting")
    assert smtp.subjects() == ["[socle] notes_backup FAILED"]
