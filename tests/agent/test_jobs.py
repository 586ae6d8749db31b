"""The job wrapper: locks, state, mail on change of state, built-in jobs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from socle_agent.config import load_config
from socle_agent.jobs import registry, resource_locks, run_job
from socle_agent.state import load_state

from tests.agent.conftest import Mailbox, config_text, mail_toml, write_config
from tests.agent.test_catalogue import make_backup


def test_registry_has_builtin_and_source_jobs() -> None:
    jobs = registry()
    assert {"disk_check", "prune", "postgres_backup"} <= set(jobs)
    assert jobs["postgres_backup"].resources == ("postgres",)
    assert {"k3s_snapshot", "k3s_drill"} <= set(jobs)
    assert jobs["k3s_snapshot"].resources == jobs["k3s_drill"].resources == ("k3s",)


def test_run_job_with_resource_held_elsewhere_is_busy_and_records_nothing(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, config_text(tmp_path)))
    with resource_locks(config.agent.lock_dir, ("postgres",)) as acquired:
        assert acquired
        result = run_job("prune", config)
    assert result.status == "busy"
    assert load_state(config.agent.state_file) == {}
    assert run_job("prune", config).status == "ok"


def test_disk_check_mails_once_when_short_and_once_when_recovered(
    tmp_path: Path, small_fs: Callable[[int], Path], smtp: Mailbox
) -> None:
    mount = small_fs(4)
    extra = mail_toml(smtp) + f'\n[disk]\nmounts = ["{mount}"]\nmin_free_ratio = 0.5\n'
    config = load_config(write_config(tmp_path, config_text(tmp_path, extra=extra)))
    assert run_job("disk_check", config).status == "ok"
    filler = mount / "filler"
    filler.write_bytes(b"\0" * (3 << 20))
    for _ in range(3):
        result = run_job("disk_check", config)
        assert result.status == "failed"
        assert "must leave" in result.error
    filler.unlink()
    assert run_job("disk_check", config).status == "ok"
    assert run_job("disk_check", config).status == "ok"
    assert smtp.subjects() == ["[socle] disk_check FAILED", "[socle] disk_check recovered"]
    record = load_state(config.agent.state_file)["jobs"]["disk_check"]
    assert record["failures_total"] == 3
    assert record["consecutive_failures"] == 0
    assert record["last_success"] >= record["last_run"] - record["duration"]


def test_mail_not_delivered_is_tried_again_on_the_next_run(
    tmp_path: Path, small_fs: Callable[[int], Path], smtp: Mailbox
) -> None:
    mount = small_fs(4)
    disk = f'\n[disk]\nmounts = ["{mount}"]\nmin_free_ratio = 0.9\n'
    (mount / "filler").write_bytes(b"\0" * (1 << 20))
    unreachable = mail_toml(smtp).replace(str(smtp.port), "1")
    path = write_config(tmp_path, config_text(tmp_path, extra=unreachable + disk))
    assert run_job("disk_check", load_config(path)).status == "failed"
    assert "notified" not in load_state(tmp_path / "state" / "state.json")["jobs"]["disk_check"]
    path.write_text(config_text(tmp_path, extra=mail_toml(smtp) + disk))
    assert run_job("disk_check", load_config(path)).status == "failed"
    assert smtp.subjects() == ["[socle] disk_check FAILED"]


def test_prune_job_applies_retention_to_every_kind(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, config_text(tmp_path)))
    for n in range(4):
        make_backup(config.agent.backup_dir, "postgres", f"app-{n}", 1000.0 + n)
        make_backup(config.agent.backup_dir, "k3s", f"k3s-{n}", 1000.0 + n, subject="k3s")
    (config.agent.backup_dir / "postgres" / "app-9.partial").mkdir()
    result = run_job("prune", config)
    assert result.status == "ok" and result.outcome is not None
    assert result.outcome.summary == "4 backups deleted"
    assert sorted(p.name for p in (config.agent.backup_dir / "postgres").iterdir()) == [
        "app-2", "app-3"
    ]
    backups = load_state(config.agent.state_file)["backups"]
    assert backups["k3s"] == {"retained": 2, "newest_end": 1003.0, "total_bytes": 20,
                              "subjects": {"k3s": 1003.0}, "orphans_removed": 0}


def test_a_state_file_that_cannot_be_written_still_mails_the_failure(
    tmp_path: Path, small_fs: Callable[[int], Path], smtp: Mailbox
) -> None:
    state_fs = small_fs(1)
    extra = mail_toml(smtp) + '\n[disk]\nmounts = ["/"]\nmin_free_ratio = 0.999\n'
    text = config_text(tmp_path, extra=extra).replace(
        str(tmp_path / "state" / "state.json"), str(state_fs / "state.json"))
    config = load_config(write_config(tmp_path, text))
    filler = os.open(state_fs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(filler, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(filler)

    result = run_job("disk_check", config)

    assert result.status == "failed"
    assert smtp.subjects() == ["[socle] disk_check FAILED"]
    payload = smtp.messages[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    assert f"the state file {state_fs / 'state.json'} cannot be written" in body


def test_prune_removes_folders_left_without_a_manifest_and_counts_them(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, config_text(tmp_path)))
    make_backup(config.agent.backup_dir, "postgres", "app-1", 1000.0)
    orphan = config.agent.backup_dir / "postgres" / "app-0"
    orphan.mkdir()
    (orphan / "dump").write_bytes(b"half deleted")

    assert run_job("prune", config).status == "ok"

    assert not orphan.exists()
    assert (config.agent.backup_dir / "postgres" / "app-1").exists()
    assert load_state(config.agent.state_file)["backups"]["postgres"]["orphans_removed"] == 1
