"""PostgreSQL drills and restores against a real server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from socle_agent import catalogue
from socle_agent.config import Config, load_config
from socle_agent.jobs import run_job
from socle_agent.manifest import file_entries, read_manifest
from socle_agent.state import load_state

from tests.agent.conftest import AGENT, Mailbox, PgCluster, config_text, mail_toml, write_config

CHECKS = """
[drill]
rto_seconds = { postgres = 3600 }

[[drill.checks]]
database = "shop"
sql = "select count(*) > 0 from customers where email like '%@example.org'"

[[drill.checks]]
database = "shop"
sql = "select count(distinct customer_id) from orders"
expect = 3000
"""


@pytest.fixture()
def config_path(tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path) -> Path:
    return write_config(tmp_path, config_text(tmp_path, pg, pg_password_file, extra=CHECKS))


@pytest.fixture()
def backed_up(config_path: Path) -> tuple[Config, catalogue.Backup]:
    """A configuration and one fresh backup of `shop`."""
    config = load_config(config_path)
    assert run_job("postgres_backup", config).status == "ok"
    [backup] = catalogue.list_backups(config.agent.backup_dir, "postgres")
    return config, backup


def scratch_databases(pg: PgCluster) -> list[str]:
    found = pg.psql("select datname from pg_database where datname like 'socle_drill_%'")
    return found.splitlines()


def rewrite_manifest(backup: catalogue.Backup, change: dict) -> None:
    path = backup.path / "manifest.json"
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))


def test_drill_of_a_good_dump_passes_and_marks_it_verified(
    backed_up: tuple[Config, catalogue.Backup], pg: PgCluster
) -> None:
    config, backup = backed_up
    result = run_job("postgres_drill", config)
    assert result.status == "ok", result.error
    assert result.outcome is not None and "passed in" in result.outcome.summary
    drill = load_state(config.agent.state_file)["drills"]["postgres"]
    assert drill["result"] == "pass" and drill["duration"] > 0
    assert read_manifest(backup.path).details["verified"] > 0
    assert scratch_databases(pg) == []


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (flip_one_byte, "checksum: dump: sha256 differs from manifest"),
        (truncate, "checksum: dump: size"),
    ],
)
def test_drill_of_a_damaged_dump_fails_naming_the_checksum(
    backed_up: tuple[Config, catalogue.Backup], pg: PgCluster, damage: object, reason: str
) -> None:
    config, backup = backed_up
    damage(backup.path / "dump")  # type: ignore[operator]
    result = run_job("postgres_drill", config)
    assert result.status == "failed"
    assert reason in result.error
    drill = load_state(config.agent.state_file)["drills"]["postgres"]
    assert drill["result"] == "fail" and reason in drill["reason"]
    assert scratch_databases(pg) == []


def test_drill_of_a_truncated_dump_with_matching_checksum_fails_in_pg_restore(
    backed_up: tuple[Config, catalogue.Backup], pg: PgCluster
) -> None:
    # A dump cut short before it was checksummed: only pg_restore can tell.
    config, backup = backed_up
    truncate(backup.path / "dump")
    [entry] = file_entries(backup.path / "dump", backup.path)
    rewrite_manifest(backup, {"files": [entry.__dict__]})
    result = run_job("postgres_drill", config)
    assert result.status == "failed"
    assert "restore: pg_restore exited with 1" in result.error
    assert scratch_databases(pg) == []


def test_drill_with_manifest_count_mismatch_fails_naming_the_table(
    backed_up: tuple[Config, catalogue.Backup], pg: PgCluster
) -> None:
    config, backup = backed_up
    counts = dict(backup.manifest.details["row_counts"])
    counts["public.orders"] += 1
    rewrite_manifest(backup, {"details": {**backup.manifest.details, "row_counts": counts}})
    result = run_job("postgres_drill", config)
    assert result.status == "failed"
    assert "row count of public.orders: 12000 restored, 12001 in the manifest" in result.error
    assert scratch_databases(pg) == []


def test_drill_with_failing_sql_check_fails_naming_the_check(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path
) -> None:
    extra = CHECKS.replace("expect = 3000", "expect = 2999")
    config = load_config(write_config(tmp_path, config_text(tmp_path, pg, pg_password_file,
                                                            extra=extra)))
    assert run_job("postgres_backup", config).status == "ok"
    result = run_job("postgres_drill", config)
    assert result.status == "failed"
    assert "check 'select count(distinct customer_id) from orders' returned 3000" in result.error
    assert scratch_databases(pg) == []


def test_drill_failure_then_pass_mails_once_each(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path, smtp: Mailbox
) -> None:
    config = load_config(write_config(tmp_path, config_text(
        tmp_path, pg, pg_password_file, extra=CHECKS + mail_toml(smtp))))
    assert run_job("postgres_drill", config).status == "failed"  # nothing to drill yet
    assert run_job("postgres_drill", config).status == "failed"
    assert run_job("postgres_backup", config).status == "ok"
    assert run_job("postgres_drill", config).status == "ok"
    assert smtp.subjects() == ["[socle] postgres_drill FAILED", "[socle] postgres_drill recovered"]


def restore_cmd(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, "--config", str(config_path), "restore", "postgres", *args],
                          capture_output=True, text=True, timeout=300)


def test_restore_into_a_new_database_gives_back_the_data(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster
) -> None:
    _, backup = backed_up
    done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", "shop_copy")
    assert done.returncode == 0, done.stderr
    assert "] TABLE DATA orders" in done.stdout
    assert "3 of 3 tables match the manifest's row counts" in done.stdout
    assert pg.row_count("shop_copy", "orders") == 12000
    assert pg.psql("select sum(total) from orders", "shop_copy") == pg.psql(
        "select sum(total) from orders", "shop")

    refused = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", "shop_copy")
    assert refused.returncode == 1
    assert "database 'shop_copy' exists; refusing to overwrite it" in refused.stderr
    pg.psql("delete from orders", "shop_copy")
    replaced = restore_cmd(config_path, "--backup", backup.manifest.id, "--database",
                           "shop_copy", "--drop-existing")
    assert replaced.returncode == 0, replaced.stderr
    assert pg.row_count("shop_copy", "orders") == 12000
    pg.psql("drop database shop_copy")


def test_restore_with_roles_recreates_a_dropped_role_and_its_grants(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster
) -> None:
    _, backup = backed_up
    databases = pg.psql("select datname from pg_database where datallowconn").splitlines()
    for database in databases:  # other tests may have restored its grants elsewhere
        pg.psql("drop owned by shop_reader", database)
    pg.psql("drop role shop_reader")
    done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", "shop_roles",
                       "--with-roles")
    assert done.returncode == 0, done.stderr
    assert "restoring roles and tablespaces" in done.stdout
    grants = pg.psql("select has_table_privilege('shop_reader', 'orders', 'select')",
                     "shop_roles")
    assert grants == "t"
    pg.psql("drop database shop_roles")
    pg.psql("grant select on all tables in schema public to shop_reader", "shop")


def test_restore_refuses_a_damaged_backup(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster
) -> None:
    _, backup = backed_up
    flip_one_byte(backup.path / "dump")
    done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", "shop_bad")
    assert done.returncode == 1
    assert "refusing to restore a damaged backup: dump: sha256 differs" in done.stderr
    assert not pg.database_exists("shop_bad")


def test_restore_of_unknown_backup_says_so(config_path: Path) -> None:
    done = restore_cmd(config_path, "--backup", "nope", "--database", "x")
    assert done.returncode == 1 and "no backup with id 'nope'" in done.stderr
