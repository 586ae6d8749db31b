"""The `socle-agent` command line, run as a real program."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.agent.conftest import (
    AGENT,
    Mailbox,
    PgCluster,
    config_text,
    mail_toml,
    write_config,
)
from tests.agent.test_catalogue import make_backup


def agent(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, "--config", str(config), *args], capture_output=True,
                          text=True, timeout=300)


def test_check_config_with_valid_file_says_ok(tmp_path: Path) -> None:
    path = write_config(tmp_path, config_text(tmp_path))
    done = agent(path, "check-config")
    assert done.returncode == 0
    assert done.stdout == f"{path}: configuration OK\n"


def test_check_config_with_errors_lists_each_key_and_exits_2(tmp_path: Path) -> None:
    text = config_text(tmp_path).replace("keep_daily = 0", "keep_daily = 'x'")
    path = write_config(tmp_path, text + '\n[schedule]\nprune = "at noon"\n')
    done = agent(path, "check-config")
    assert done.returncode == 2
    assert f"{path}: retention.keep_daily: expected an integer, got 'x'" in done.stderr
    assert f"{path}: schedule.prune: cannot read 'at noon'" in done.stderr


def test_backup_list_status_and_prune(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path
) -> None:
    path = write_config(tmp_path, config_text(tmp_path, pg, pg_password_file))
    done = agent(path, "backup", "postgres", "--database", "shop")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("postgres_backup: ok in ")
    listing = agent(path, "list").stdout.splitlines()
    assert listing[0].split() == ["ID", "KIND", "SUBJECT", "FINISHED", "SIZE"]
    assert listing[1].startswith("shop-") and " postgres " in listing[1]
    status = agent(path, "status").stdout
    assert "postgres_backup  ok" in status and "backups postgres 1 kept" in status
    for n in range(3):
        make_backup(tmp_path / "backups", "postgres", f"shop-old{n}", 1000.0 + n, subject="shop")
    dry = agent(path, "prune", "--dry-run")
    # keep_last = 2: the new dump and the newest of the old ones stay.
    assert dry.stdout.splitlines() == [f"would delete postgres/shop-old{n}" for n in range(2)]
    assert agent(path, "prune").stdout == "prune: 2 backups deleted\n"
    kept = agent(path, "list", "--kind", "postgres").stdout.splitlines()[1:]
    assert [line.split()[0] for line in kept] == ["shop-old2", listing[1].split()[0]]
    as_json = json.loads(agent(path, "list", "--json").stdout)
    assert [(b["id"], b["kind"], b["subject"]) for b in as_json] == [
        ("shop-old2", "postgres", "shop"), (listing[1].split()[0], "postgres", "shop")
    ]
    assert as_json[1]["finished"] > as_json[0]["finished"] and as_json[1]["size_bytes"] > 0


def test_backup_with_postgres_unreachable_exits_1(
    tmp_path: Path, pg: PgCluster, pg_password_file: Path
) -> None:
    text = config_text(tmp_path, pg, pg_password_file).replace(f"port = {pg.port}", "port = 1")
    done = agent(write_config(tmp_path, text), "backup", "postgres")
    assert done.returncode == 1
    assert "postgres_backup: failed: " in done.stderr and "after 3 attempts" in done.stderr


def test_notify_test_sends_one_mail(tmp_path: Path, smtp: Mailbox) -> None:
    path = write_config(tmp_path, config_text(tmp_path, extra=mail_toml(smtp)))
    done = agent(path, "notify-test")
    assert done.returncode == 0, done.stderr
    assert smtp.subjects() == ["[socle] test mail"]


def test_notify_test_without_mail_section_exits_2(tmp_path: Path) -> None:
    done = agent(write_config(tmp_path, config_text(tmp_path)), "notify-test")
    assert done.returncode == 2
    assert "mail is not enabled" in done.stderr
