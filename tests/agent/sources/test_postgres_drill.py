"""PostgreSQL drills and restores against a real server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
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


def largest_data_file(backup: catalogue.Backup) -> Path:
    """The biggest table file of a directory-format dump (the orders table's)."""
    return max((backup.path / "dump").glob("*.dat.gz"), key=lambda p: p.stat().st_size)


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
        (flip_one_byte, "sha256 differs from manifest"),
        (truncate, "size"),
    ],
)
def test_drill_of_a_damaged_dump_fails_naming_the_checksum(
    backed_up: tuple[Config, catalogue.Backup], pg: PgCluster, damage: object, reason: str
) -> None:
    config, backup = backed_up
    damaged = largest_data_file(backup)
    damage(damaged)  # type: ignore[operator]
    result = run_job("postgres_drill", config)
    assert result.status == "failed"
    reason = f"checksum: dump/{damaged.name}: {reason}"
    assert reason in result.error
    drill = load_state(config.agent.state_file)["drills"]["postgres"]
    assert drill["result"] == "fail" and reason in drill["reason"]
    assert scratch_databases(pg) == []


def test_drill_of_a_truncated_dump_with_matching_checksum_fails_in_pg_restore(
    backed_up: tuple[Config, catalogue.Backup], pg: PgCluster
) -> None:
    # A dump cut short before it was checksummed: only pg_restore can tell.
    config, backup = backed_up
    truncate(largest_data_file(backup))
    entries = file_entries(backup.path / "dump", backup.path)
    entries += file_entries(backup.path / "globals.sql", backup.path)
    rewrite_manifest(backup, {"files": [entry.__dict__ for entry in entries]})
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


def test_drill_whose_scratch_name_is_a_live_database_refuses_and_leaves_it(
    tmp_path: Path, pg: PgCluster, pg_password_file: Path
) -> None:
    # with scratch_prefix "a", the drill of `pp` would restore into `app`, a live database
    pg.psql("create database app")
    pg.psql("create table precious (x int); insert into precious values (42)", "app")
    pg.psql("create database pp")
    try:
        text = config_text(tmp_path, pg, pg_password_file, databases=("pp",))
        text += '\n[drill]\nscratch_prefix = "a"\n'
        config = load_config(write_config(tmp_path, text))
        assert run_job("postgres_backup", config).status == "ok"
        result = run_job("postgres_drill", config)
        assert result.status == "failed"
        assert "database 'app' exists and was not made by the agent" in result.error
        assert pg.psql("select x from precious", "app") == "42"
    finally:
        pg.psql("drop database app")
        pg.psql("drop database pp")


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
    # owners and grants are kept: the application's role reads what it read before
    assert pg.psql("select has_table_privilege('shop_reader', 'orders', 'select')",
                   "shop_copy") == "t"
    assert databases_like(pg, "shop_copy_%") == []
    pg.psql("drop database shop_copy")


def databases_like(pg: PgCluster, pattern: str) -> list[str]:
    return pg.psql(f"select datname from pg_database where datname like '{pattern}' "
                   "order by 1").splitlines()


def test_restore_over_an_existing_database_is_refused_without_replace(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster
) -> None:
    _, backup = backed_up
    refused = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", "shop")
    assert refused.returncode == 3
    assert "database 'shop' exists; refusing to touch it (use --replace" in refused.stderr
    assert databases_like(pg, "shop_restoring_%") + databases_like(pg, "shop_before_%") == []


@pytest.fixture()
def live_copy(pg: PgCluster) -> Iterator[str]:
    """A live database `live` made from `shop`, changed since: it has no orders."""
    pg.psql("create database live template shop")
    pg.psql("delete from orders", "live")
    yield "live"
    for name in databases_like(pg, "live%"):
        pg.psql(f'drop database "{name}" with (force)')


def assert_live_untouched(pg: PgCluster, live: str) -> None:
    """The live database still has no orders and nothing the restore made is left."""
    assert pg.row_count(live, "orders") == 0
    assert databases_like(pg, f"{live}_%") == []


def test_restore_replace_swaps_the_checked_copy_in_and_keeps_the_previous_one(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster, live_copy: str
) -> None:
    _, backup = backed_up
    done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", live_copy,
                       "--replace")
    assert done.returncode == 0, done.stderr
    assert pg.row_count(live_copy, "orders") == 12000
    [previous] = databases_like(pg, "live_before_%")
    assert int(pg.psql("select count(*) from orders", previous)) == 0
    assert f"the previous database is kept as '{previous}'" in done.stdout
    assert f"the database live before the restore of {backup.manifest.id}" in pg.psql(
        f"select shobj_description(oid, 'pg_database') from pg_database "
        f"where datname = '{previous}'")
    assert pg.psql("select shobj_description(oid, 'pg_database') from pg_database "
                   "where datname = 'live'") == ""
    assert databases_like(pg, "live_restoring_%") == []


def test_restore_replace_without_keep_previous_drops_the_old_database(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster, live_copy: str
) -> None:
    _, backup = backed_up
    done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", live_copy,
                       "--replace", "--no-keep-previous")
    assert done.returncode == 0, done.stderr
    assert pg.row_count(live_copy, "orders") == 12000
    assert databases_like(pg, "live_%") == []


def test_restore_whose_copy_fails_its_check_leaves_the_live_database_as_it_was(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster, live_copy: str
) -> None:
    _, backup = backed_up
    counts = dict(backup.manifest.details["row_counts"])
    counts["public.orders"] += 1
    rewrite_manifest(backup, {"details": {**backup.manifest.details, "row_counts": counts}})
    done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", live_copy,
                       "--replace")
    assert done.returncode == 1
    assert "does not match the manifest, 'live' untouched" in done.stderr
    assert "row count of public.orders: 12000 restored, 12001" in done.stderr
    assert_live_untouched(pg, live_copy)


def test_restore_with_roles_of_a_backup_without_roles_is_refused_before_anything_changes(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path, live_copy: str
) -> None:
    text = config_text(tmp_path, pg, pg_password_file).replace(
        "bin_dir", "dump_roles = false\nbin_dir")
    path = write_config(tmp_path, text)
    assert run_job("postgres_backup", load_config(path)).status == "ok"
    [backup] = catalogue.list_backups(tmp_path / "backups")
    done = restore_cmd(path, "--backup", backup.manifest.id, "--database", live_copy,
                       "--replace", "--with-roles")
    assert done.returncode == 3
    assert "holds no roles (no globals.sql)" in done.stderr
    assert_live_untouched(pg, live_copy)


def test_restore_with_a_missing_owner_role_fails_and_says_how_to_create_it(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster, live_copy: str
) -> None:
    _, backup = backed_up
    drop_shop_reader(pg)
    try:
        done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", live_copy,
                           "--replace")
        assert done.returncode == 1
        assert 'role "shop_reader" does not exist' in done.stderr
        assert "--with-roles creates the backup's missing roles" in done.stderr
        assert_live_untouched(pg, live_copy)
    finally:
        recreate_shop_reader(pg)


def drop_shop_reader(pg: PgCluster) -> None:
    databases = pg.psql("select datname from pg_database where datallowconn").splitlines()
    for database in databases:  # other tests may have restored its grants elsewhere
        pg.psql("drop owned by shop_reader", database)
    pg.psql("drop role shop_reader")


def recreate_shop_reader(pg: PgCluster) -> None:
    if pg.psql("select count(*) from pg_roles where rolname = 'shop_reader'") == "0":
        pg.psql("create role shop_reader login password 'reader'")
    pg.psql("alter role shop_reader password 'reader'")
    pg.psql("grant select on all tables in schema public to shop_reader", "shop")


def logs_in(pg: PgCluster, role: str, password: str) -> bool:
    try:
        psycopg.connect(host="127.0.0.1", port=pg.port, user=role, password=password,
                        dbname="postgres", connect_timeout=5).close()
    except psycopg.OperationalError:
        return False
    return True


def test_restore_with_roles_creates_missing_roles_and_leaves_existing_ones_untouched(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster
) -> None:
    _, backup = backed_up
    drop_shop_reader(pg)
    pg.psql("create role shop_reader login password 'changed since'")
    try:
        done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database",
                           "shop_roles", "--with-roles")
        assert done.returncode == 0, done.stderr
        assert "existing left as they are" in done.stdout
        assert logs_in(pg, "shop_reader", "changed since")
        assert not logs_in(pg, "shop_reader", "reader")
        pg.psql("drop database shop_roles")

        drop_shop_reader(pg)
        done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database",
                           "shop_roles", "--with-roles")
        assert done.returncode == 0, done.stderr
        assert "1 missing created (shop_reader)" in done.stdout
        assert logs_in(pg, "shop_reader", "reader")
        grants = pg.psql("select has_table_privilege('shop_reader', 'orders', 'select')",
                         "shop_roles")
        assert grants == "t"
        pg.psql("drop database shop_roles")

        pg.psql("alter role shop_reader password 'changed again'")
        done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database",
                           "shop_roles", "--with-roles", "--reset-role-passwords")
        assert done.returncode == 0, done.stderr
        assert "passwords reset for shop_reader" in done.stdout
        assert logs_in(pg, "shop_reader", "reader")
        pg.psql("drop database shop_roles")
    finally:
        recreate_shop_reader(pg)


def test_restore_refuses_a_damaged_backup(
    backed_up: tuple[Config, catalogue.Backup], config_path: Path, pg: PgCluster
) -> None:
    _, backup = backed_up
    damaged = largest_data_file(backup)
    flip_one_byte(damaged)
    done = restore_cmd(config_path, "--backup", backup.manifest.id, "--database", "shop_bad")
    assert done.returncode == 3
    assert (f"refusing to restore a damaged backup: dump/{damaged.name}: sha256 differs"
            in done.stderr)
    assert not pg.database_exists("shop_bad")


def test_restore_of_unknown_backup_says_so(config_path: Path) -> None:
    done = restore_cmd(config_path, "--backup", "nope", "--database", "x")
    assert done.returncode == 4 and "no backup with id 'nope'" in done.stderr
