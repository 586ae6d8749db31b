"""Metrics: built from the state file, the config and the disks; scraped over HTTP."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from socle_agent import __version__
from socle_agent.config import load_config
from socle_agent.metrics import build_registry, start_server
from socle_agent.state import save_state

from tests.agent.conftest import config_text, write_config

EXTRA = """
[drill]
rto_seconds = { postgres = 1800 }
rpo_seconds = { postgres = 90000, k3s = 25200 }
"""


def test_registry_reports_jobs_backups_drills_targets_disks(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, config_text(tmp_path, extra=EXTRA)))
    registry = build_registry(config)
    assert registry.get_sample_value("socle_agent_info", {"version": __version__}) == 1
    assert registry.get_sample_value("socle_job_last_status", {"task": "postgres_backup"}) is None
    save_state(config.agent.state_file, {
        "jobs": {
            "postgres_backup": {"last_run": 200.0, "last_success": 100.0, "duration": 12.5,
                                "size": 4096, "status": "failed", "failures_total": 2},
        },
        "backups": {"postgres": {"retained": 3, "newest_end": 99.0,
                                 "subjects": {"app": 99.0, "shop": 98.0},
                                 "orphans_removed": 1}},
        "drills": {"postgres": {"result": "pass", "duration": 42.0}},
    })
    job = {"task": "postgres_backup"}
    assert registry.get_sample_value("socle_job_last_status", job) == 0
    assert registry.get_sample_value("socle_job_failures_total", job) == 2
    assert registry.get_sample_value("socle_job_last_success_timestamp_seconds", job) == 100
    assert registry.get_sample_value("socle_job_last_run_timestamp_seconds", job) == 200
    assert registry.get_sample_value("socle_job_last_duration_seconds", job) == 12.5
    assert registry.get_sample_value("socle_job_last_size_bytes", job) == 4096
    kind = {"kind": "postgres"}
    assert registry.get_sample_value("socle_backup_retained", kind) == 3
    assert registry.get_sample_value("socle_backup_newest_timestamp_seconds",
                                      {**kind, "subject": "app"}) == 99
    assert registry.get_sample_value("socle_backup_newest_timestamp_seconds",
                                      {**kind, "subject": "shop"}) == 98
    assert registry.get_sample_value("socle_backup_orphans_removed_total", kind) == 1
    assert registry.get_sample_value("socle_drill_last_result", kind) == 1
    assert registry.get_sample_value("socle_drill_last_duration_seconds", kind) == 42
    assert registry.get_sample_value("socle_rto_target_seconds", kind) == 1800
    assert registry.get_sample_value("socle_rpo_target_seconds", {"kind": "k3s"}) == 25200
    mount = {"mount": str(config.agent.backup_dir)}
    size = registry.get_sample_value("socle_disk_size_bytes", mount)
    free = registry.get_sample_value("socle_disk_free_bytes", mount)
    assert size and free and 0 < free <= size
    assert registry.get_sample_value("socle_disk_free_ratio", mount) == free / size


def test_registry_reports_k3s_datastore_sizes(tmp_path: Path) -> None:
    server = tmp_path / "k3s-server"
    (server / "db").mkdir(parents=True)
    (server / "db" / "state.db").write_bytes(b"x" * 4096)
    (server / "db" / "state.db-wal").write_bytes(b"x" * 100)
    extra = f'[k3s]\nserver_dir = "{server}"\n'
    config = load_config(write_config(tmp_path, config_text(tmp_path, extra=extra)))
    registry = build_registry(config)
    assert registry.get_sample_value("socle_k3s_datastore_bytes", {"file": "state.db"}) == 4096
    assert registry.get_sample_value("socle_k3s_datastore_bytes", {"file": "state.db-wal"}) == 100


def test_server_serves_the_metrics_over_http(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, config_text(tmp_path, extra=EXTRA)))
    save_state(config.agent.state_file, {"jobs": {"prune": {"status": "ok", "last_run": 5.0}}})
    server, _ = start_server(config.metrics, build_registry(config))
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [status] = families["socle_job_last_status"].samples
    assert status.labels == {"task": "prune"} and status.value == 1
    assert "socle_job_failures" in families and "socle_agent_up" in families


def test_registry_without_a_k3s_datastore_reports_no_datastore_series(tmp_path: Path) -> None:
    extra = f'[k3s]\nserver_dir = "{tmp_path / "no-k3s-here"}"\n'
    config = load_config(write_config(tmp_path, config_text(tmp_path, extra=extra)))
    registry = build_registry(config)
    samples = [s for m in registry.collect() if m.name == "socle_k3s_datastore_bytes"
               for s in m.samples]
    assert samples == []
    assert registry.get_sample_value("socle_agent_up") == 1


def test_registry_reports_a_missing_wal_as_zero_bytes(tmp_path: Path) -> None:
    server = tmp_path / "k3s-server"
    (server / "db").mkdir(parents=True)
    (server / "db" / "state.db").write_bytes(b"x" * 8192)
    extra = f'[k3s]\nserver_dir = "{server}"\n'
    config = load_config(write_config(tmp_path, config_text(tmp_path, extra=extra)))
    registry = build_registry(config)
    assert registry.get_sample_value("socle_k3s_datastore_bytes", {"file": "state.db"}) == 8192
    assert registry.get_sample_value("socle_k3s_datastore_bytes", {"file": "state.db-wal"}) == 0


def test_no_series_carries_the_labels_prometheus_sets_itself(tmp_path: Path) -> None:
    """`job` and `instance` are the scrape's: an exposed one would become `exported_job`."""
    config = load_config(write_config(tmp_path, config_text(tmp_path, extra=EXTRA)))
    save_state(config.agent.state_file, {
        "jobs": {"prune": {"status": "ok", "last_run": 5.0, "last_success": 5.0}},
        "backups": {"k3s": {"retained": 1, "newest_end": 4.0}},
        "drills": {"k3s": {"result": "pass", "duration": 1.0}},
    })
    samples = [s for m in build_registry(config).collect() for s in m.samples]
    assert len(samples) > 10
    assert [s for s in samples if {"job", "instance"} & set(s.labels)] == []
    assert {s.labels["task"] for s in samples if s.name.startswith("socle_job_")} == {"prune"}
