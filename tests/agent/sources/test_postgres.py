"""PostgreSQL dumps against a real server: content, manifest, faults."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from kubernetes.client import ApiException
from socle_agent import catalogue
from socle_agent.base import JobAborted, JobContext
from socle_agent.config import (
    Config,
    KubernetesConnection,
    PostgresSection,
    load_config,
    parse_config,
)
from socle_agent.jobs import run_job
from socle_agent.manifest import verify_files
from socle_agent.postgres.connection import (
    Connection,
    PostgresError,
    connection_from_cluster,
    resolve_connection,
)
from socle_agent.postgres.dump import dump_database
from socle_agent.state import load_state

from tests.agent.conftest import (
    AGENT,
    PG_BIN,
    Mailbox,
    PgCluster,
    config_text,
    free_bytes,
    mail_toml,
    make_cluster,
    partial_dump_growing,
    wait_for,
    write_config,
)
from tests.agent.sources.kube_standin import CoreV1ApiStandIn, secret, service


def agent_config(tmp_path: Path, pg: PgCluster, password_file: Path, extra: str = "",
                 **kwargs: object) -> Config:
    text = config_text(tmp_path, pg, password_file, extra=extra, **kwargs)  # type: ignore[arg-type]
    return load_config(write_config(tmp_path, text))


def restore_into(pg: PgCluster, backup: catalogue.Backup, database: str) -> None:
    """pg_restore the backup's dump into a new database."""
    pg.psql(f"drop database if exists {database}")
    pg.psql(f"create database {database}")
    subprocess.run(
        [str(PG_BIN / "pg_restore"), "--exit-on-error", "--no-owner", "-j", "2",
         "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", pg.user, "-d", database,
         str(backup.path / "dump")],
        check=True, capture_output=True,
    )


def test_backup_postgres_restores_to_the_manifest_row_counts(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path
) -> None:
    config = agent_config(tmp_path, pg, pg_password_file)
    result = run_job("postgres_backup", config)
    assert result.status == "ok", result.error
    [backup] = catalogue.list_backups(config.agent.backup_dir, "postgres")
    manifest = backup.manifest
    assert verify_files(backup.path, manifest) == []
    names = [f.name for f in manifest.files]
    assert "dump/toc.dat" in names and names[-1] == "globals.sql"
    assert manifest.format == "directory" and manifest.details["compression"] == "gzip:3"
    assert manifest.details["row_counts"] == {
        "audit.events": 500, "public.customers": 3000, "public.orders": 12000
    }
    assert manifest.details["server_version"].startswith("15.")
    assert manifest.details["pg_dump_version"].startswith("pg_dump (PostgreSQL) 15.")
    assert manifest.started <= manifest.finished
    assert oct(backup.path.stat().st_mode & 0o777) == "0o700"
    assert all((backup.path / f.name).stat().st_mode & 0o777 == 0o600 for f in manifest.files)
    assert "CREATE ROLE shop_reader" in (backup.path / "globals.sql").read_text()

    restore_into(pg, backup, "shop_restored")
    for table, count in manifest.details["row_counts"].items():
        assert pg.row_count("shop_restored", table) == count
    assert load_state(config.agent.state_file)["jobs"]["postgres_backup"]["size"] == (
        manifest.size_bytes
    )


def test_backup_postgres_in_custom_format_streams_one_checksummed_file(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path
) -> None:
    config = agent_config(tmp_path, pg, pg_password_file)
    section = config.postgres
    assert section is not None
    config = Config(**{**config.__dict__, "postgres": PostgresSection(
        **{**section.__dict__, "format": "custom", "compression": "gzip:6"})})
    assert run_job("postgres_backup", config).status == "ok"
    [backup] = catalogue.list_backups(config.agent.backup_dir)
    assert [f.name for f in backup.manifest.files] == ["dump", "globals.sql"]
    assert backup.manifest.details["compression"] == "gzip:6"
    assert verify_files(backup.path, backup.manifest) == []
    restore_into(pg, backup, "shop_from_custom")
    assert pg.row_count("shop_from_custom", "orders") == 12000


def test_backup_postgres_with_no_databases_listed_dumps_each_user_database(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path
) -> None:
    pg.psql("create database tiny")
    pg.psql("create table t (x int); insert into t values (1), (2)", "tiny")
    config = agent_config(tmp_path, pg, pg_password_file, databases=())
    result = run_job("postgres_backup", config, options={"database": "tiny"})
    assert result.status == "ok"
    config_all = agent_config(tmp_path, pg, pg_password_file, databases=())
    assert config_all.postgres is not None and config_all.postgres.databases == ()
    subjects = {b.manifest.subject for b in catalogue.list_backups(config.agent.backup_dir)}
    assert subjects == {"tiny"}
    pg.psql("drop database tiny")


def test_backup_postgres_keeps_only_what_retention_allows(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path
) -> None:
    config = agent_config(tmp_path, pg, pg_password_file)
    for _ in range(3):
        assert run_job("postgres_backup", config).status == "ok"
    backups = catalogue.list_backups(config.agent.backup_dir, "postgres")
    assert len(backups) == 2  # keep_last = 2
    assert load_state(config.agent.state_file)["backups"]["postgres"]["retained"] == 2


# A job's context for calls that need only the agent's defaults (network timeout).
JOB = JobContext(parse_config({}, check_paths=False))


def _cluster_api(pg: PgCluster) -> CoreV1ApiStandIn:
    """The cluster as the agent sees it under its Role (gitops/agent/role.yaml)."""
    return CoreV1ApiStandIn.under_agent_role(
        services={"postgresql": service("postgresql", "127.0.0.1",
                                        {"metrics": 9187, "postgresql": pg.port})},
        secrets={
            "postgresql-credentials": secret(
                "postgresql-credentials", {"password": pg.password, "username": "postgres"}),
            "postgresql-admin": secret("postgresql-admin", {"password": "not for the agent"}),
        },
    )


def test_connection_from_cluster_reads_service_address_and_secret(pg: PgCluster) -> None:
    api = _cluster_api(pg)
    kube = KubernetesConnection(service="postgresql", secret="postgresql-credentials",
                                namespace="database", port_name="postgresql",
                                user_key="username")
    connection = connection_from_cluster(JOB, kube, "ignored", api)
    assert connection == Connection("127.0.0.1", pg.port, "postgres", pg.password)
    assert api.calls == [("service", "database", "postgresql"),
                         ("secret", "database", "postgresql-credentials")]


def test_connection_from_cluster_explains_what_is_missing(pg: PgCluster) -> None:
    api = _cluster_api(pg)
    base = dict(service="postgresql", secret="postgresql-credentials", namespace="database")
    with pytest.raises(PostgresError, match="has no port named 'pg'"):
        connection_from_cluster(JOB, KubernetesConnection(**base, port_name="pg"), "u", api)
    with pytest.raises(PostgresError, match="has no key 'pw'"):
        connection_from_cluster(JOB, KubernetesConnection(**base, password_key="pw"), "u", api)
    api.services["postgresql"] = service("postgresql", "None", {"postgresql": 5432})
    with pytest.raises(PostgresError, match="has no cluster IP"):
        connection_from_cluster(JOB, KubernetesConnection(**base), "u", api)


def test_dump_through_cluster_connection_reaches_the_real_server(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path
) -> None:
    config = agent_config(tmp_path, pg, pg_password_file)
    assert config.postgres is not None
    section = PostgresSection(**{**config.postgres.__dict__, "password_file": None,
                                 "kubernetes": KubernetesConnection(
                                     service="postgresql", secret="postgresql-credentials",
                                     namespace="database", port_name="postgresql")})
    connection = resolve_connection(JobContext(config), section, core_api=_cluster_api(pg))
    assert connection.port == pg.port and connection.password == pg.password
    backup = dump_database(JobContext(config), connection, "shop")
    assert backup.manifest.details["row_counts"]["public.orders"] == 12000
    elsewhere = PostgresSection(**{**section.__dict__, "kubernetes": KubernetesConnection(
        service="postgresql", secret="postgresql-credentials", namespace="default")})
    with pytest.raises(ApiException, match="Forbidden"):
        resolve_connection(JobContext(config), elsewhere, core_api=_cluster_api(pg))


def test_cluster_connection_under_the_agents_role_reads_only_its_service_and_secret(
    pg: PgCluster,
) -> None:
    api = _cluster_api(pg)
    kube = KubernetesConnection(service="postgresql", secret="postgresql-admin",
                                namespace="database", port_name="postgresql")

    with pytest.raises(ApiException, match="Forbidden: get secret database/postgresql-admin"):
        connection_from_cluster(JOB, kube, "postgres", api)

    headless = KubernetesConnection(service="postgresql-headless",
                                    secret="postgresql-credentials", namespace="database")
    with pytest.raises(ApiException, match="Forbidden: get service"):
        connection_from_cluster(JOB, headless, "postgres", api)
    assert api.grants == {("database", "services", "postgresql"),
                          ("database", "secrets", "postgresql-credentials")}


def _dump_dir(config: Config) -> Path:
    return config.agent.backup_dir / "postgres"


def test_sigkill_mid_dump_promotes_nothing_and_loses_nothing(
    tmp_path: Path, pg: PgCluster, big_db: str, pg_password_file: Path
) -> None:
    text = config_text(tmp_path, pg, pg_password_file, databases=("big",))
    path = write_config(tmp_path, text.replace('bin_dir', 'compression = 9\nbin_dir'))
    config = load_config(path)
    assert run_job("postgres_backup", config).status == "ok"
    [earlier] = catalogue.list_backups(config.agent.backup_dir)

    agent = subprocess.Popen([AGENT, "--config", str(path), "backup", "postgres"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: partial_dump_growing(config.agent.backup_dir), timeout=120)
        agent.send_signal(signal.SIGKILL)
    finally:
        agent.wait()
    assert agent.returncode == -signal.SIGKILL
    assert catalogue.list_backups(config.agent.backup_dir) == [earlier]
    assert verify_files(earlier.path, earlier.manifest) == []

    assert run_job("postgres_backup", config).status == "ok"
    assert not list(_dump_dir(config).glob("*.partial"))
    assert len(catalogue.list_backups(config.agent.backup_dir)) == 2


def test_full_disk_fails_cleanly_and_keeps_earlier_backups(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path,
    small_fs: Callable[[int], Path], smtp: Mailbox
) -> None:
    small_backup_fs = small_fs(3)
    # The guard lets the dump start (it expects half the last size and wants no reserve),
    # so the filesystem really fills up during the write.
    extra = mail_toml(smtp) + "\n[disk]\nmin_free_ratio = 0.0\ngrowth_factor = 0.5\n"
    config = agent_config(tmp_path, pg, pg_password_file, extra=extra,
                          backup_dir=small_backup_fs / "backups")
    assert run_job("postgres_backup", config).status == "ok"
    [earlier] = catalogue.list_backups(config.agent.backup_dir)
    free = free_bytes(small_backup_fs)
    leave = int(earlier.manifest.size_bytes * 0.7)
    (small_backup_fs / "filler").write_bytes(b"\0" * (free - leave))

    result = run_job("postgres_backup", config)
    assert result.status == "failed"
    assert "No space left on device" in result.error
    assert catalogue.list_backups(config.agent.backup_dir) == [earlier]
    assert verify_files(earlier.path, earlier.manifest) == []
    assert not list(_dump_dir(config).glob("*.partial"))
    assert smtp.subjects() == ["[socle] postgres_backup FAILED"]
    assert "No space left on device" in smtp.messages[0].get_payload()


def test_disk_guard_refuses_a_backup_that_would_not_fit(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path,
    small_fs: Callable[[int], Path], smtp: Mailbox
) -> None:
    small_backup_fs = small_fs(3)
    config = agent_config(tmp_path, pg, pg_password_file, extra=mail_toml(smtp),
                          backup_dir=small_backup_fs / "backups")
    assert run_job("postgres_backup", config).status == "ok"
    [earlier] = catalogue.list_backups(config.agent.backup_dir)
    free = free_bytes(small_backup_fs)
    (small_backup_fs / "filler").write_bytes(b"\0" * (free - earlier.manifest.size_bytes))

    result = run_job("postgres_backup", config)
    assert result.status == "failed"
    assert result.error.startswith("disk guard refused the job: ")
    assert "expects to write" in result.error
    assert catalogue.list_backups(config.agent.backup_dir) == [earlier]
    assert list(_dump_dir(config).iterdir()) == [earlier.path]
    assert smtp.subjects() == ["[socle] postgres_backup FAILED"]


def test_postgres_stopped_retries_then_mails_once_and_once_on_recovery(
    tmp_path: Path, pg_password_file: Path, smtp: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = make_cluster()
    try:
        cluster.psql("create database shop")
        cluster.psql("create table t (x int); insert into t values (1)", "shop")
        cluster.stop()
        config = agent_config(tmp_path, cluster, pg_password_file, extra=mail_toml(smtp))
        caplog.set_level(logging.WARNING, logger="socle_agent")
        for _ in range(3):
            result = run_job("postgres_backup", config)
            assert result.status == "failed"
            assert "after 3 attempts" in result.error
        attempts = [r for r in caplog.records if "(attempt" in r.getMessage()]
        assert len(attempts) == 9
        record = load_state(config.agent.state_file)["jobs"]["postgres_backup"]
        assert record["failures_total"] == 3 and record["status"] == "failed"
        assert smtp.subjects() == ["[socle] postgres_backup FAILED"]

        cluster.start()
        assert run_job("postgres_backup", config).status == "ok"
        assert run_job("postgres_backup", config).status == "ok"
        assert smtp.subjects() == ["[socle] postgres_backup FAILED",
                                   "[socle] postgres_backup recovered"]
    finally:
        cluster.destroy()


def _rows_in_dump(dump: Path, table: str) -> int:
    """Rows of `table` in a custom-format dump, read back with pg_restore."""
    script = subprocess.run(
        [str(PG_BIN / "pg_restore"), "--data-only", f"--table={table}", "-f", "-", str(dump)],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    start = next(i for i, line in enumerate(script) if line.startswith("COPY "))
    return script.index("\\.", start) - start - 1


def test_row_counts_are_taken_in_the_snapshot_pg_dump_dumps(
    tmp_path: Path, pg: PgCluster, big_db: str, pg_password_file: Path
) -> None:
    pg.psql("create table if not exists ticks (n bigint)", "big")
    text = config_text(tmp_path, pg, pg_password_file, databases=("big",))
    text = text.replace("bin_dir", "compression = 9\nbin_dir")
    config = load_config(write_config(tmp_path, text))
    stop = threading.Event()

    def write_ticks() -> None:
        with psycopg.connect(host=str(pg.socket_dir), port=pg.port, user=pg.user, dbname="big",
                             autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                n += 1
                conn.execute("insert into ticks values (%s)", (n,))

    writer = threading.Thread(target=write_ticks)
    writer.start()
    try:
        wait_for(lambda: pg.row_count("big", "ticks") > 100)
        result = run_job("postgres_backup", config)
    finally:
        stop.set()
        writer.join()
    assert result.status == "ok", result.error
    [backup] = catalogue.list_backups(config.agent.backup_dir)
    counted = backup.manifest.details["row_counts"]["public.ticks"]
    assert counted == _rows_in_dump(backup.path / "dump", "ticks")
    assert counted < pg.row_count("big", "ticks")


def test_dump_stopped_at_once_cancels_counting_and_leaves_nothing(
    tmp_path: Path, pg: PgCluster, big_db: str, pg_password_file: Path
) -> None:
    config = agent_config(tmp_path, pg, pg_password_file, databases=("big",))
    context = JobContext(config)
    context.cancel.set()
    connection = resolve_connection(context, config.postgres)  # type: ignore[arg-type]
    with pytest.raises(JobAborted):
        dump_database(context, connection, "big")
    assert not _dump_dir(config).exists() or list(_dump_dir(config).iterdir()) == []
    # Backends end just after their client closes; wait for them rather than race them.
    wait_for(lambda: pg.psql("select count(*) from pg_stat_activity where datname = 'big'")
             == "0")


def test_hostile_database_names_stay_inside_the_catalogue_and_scratch_copies_are_skipped(
    tmp_path: Path, pg: PgCluster, pg_password_file: Path
) -> None:
    hostile = ["../../escape", "a/b", ".hidden"]
    for name in hostile:
        pg.psql(f'create database "{name}"')
        pg.psql("create table t (x int); insert into t values (1), (2)", name)
    pg.psql("create database socle_drill_left")
    pg.psql("comment on database socle_drill_left is 'socle-agent: drill scratch database'")
    try:
        config = agent_config(tmp_path, pg, pg_password_file, databases=())
        result = run_job("postgres_backup", config)
        assert result.status == "ok", result.error
        backups = catalogue.list_backups(config.agent.backup_dir, "postgres")
        by_subject = {b.manifest.subject: b for b in backups}
        assert set(hostile) <= set(by_subject)
        assert "socle_drill_left" not in by_subject
        root = config.agent.backup_dir / "postgres"
        for name in hostile:
            backup = by_subject[name]
            assert backup.path.parent == root
            assert backup.path.name.startswith(catalogue.safe_name(name) + "-")
            assert catalogue.name_from_safe(backup.path.name.rsplit("-", 1)[0]) == name
            assert backup.manifest.details["row_counts"] == {"public.t": 2}
        assert not list(tmp_path.parent.glob("escape*")) and not (tmp_path / "escape").exists()
        assert run_job("postgres_drill", config, options={"database": "a/b"}).status == "ok"
    finally:
        for name in [*hostile, "socle_drill_left"]:
            pg.psql(f'drop database if exists "{name}"')


@pytest.mark.parametrize("name", ["app", "../x", "a/b", "é", "%41", "-", "a b"])
def test_safe_name_gives_one_plain_file_name_and_back(name: str) -> None:
    encoded = catalogue.safe_name(name)
    assert "/" not in encoded and not encoded.startswith(".") and encoded
    assert catalogue.name_from_safe(encoded) == name


def test_first_backup_too_large_for_the_disk_is_refused_on_the_next_attempt(
    tmp_path: Path, pg: PgCluster, big_db: str, pg_password_file: Path,
    small_fs: Callable[[int], Path],
) -> None:
    backup_fs = small_fs(3)
    extra = "\n[disk]\nmin_free_ratio = 0.0\n"
    config = agent_config(tmp_path, pg, pg_password_file, extra=extra, databases=("big",),
                          backup_dir=backup_fs / "backups")
    first = run_job("postgres_backup", config)
    assert first.status == "failed" and "No space left on device" in first.error
    written = load_state(config.agent.state_file)["out_of_space"]["postgres/big"]
    assert written > 1_000_000

    started = time.monotonic()
    second = run_job("postgres_backup", config)
    assert second.status == "failed"
    assert "disk guard refused the job" in second.error
    assert "estimated from the bytes written before the last out-of-space failure" in second.error
    assert time.monotonic() - started < 5
    assert not list(_dump_dir(config).iterdir())


def test_a_database_never_backed_up_is_estimated_from_its_size_and_the_last_ratio(
    tmp_path: Path, pg: PgCluster, shop_db: str, big_db: str, pg_password_file: Path,
    small_fs: Callable[[int], Path],
) -> None:
    backup_fs = small_fs(6)
    config = agent_config(tmp_path, pg, pg_password_file, databases=("shop",),
                          extra="\n[disk]\nmin_free_ratio = 0.0\n",
                          backup_dir=backup_fs / "backups")
    assert run_job("postgres_backup", config).status == "ok"
    result = run_job("postgres_backup", config, options={"database": "big"})
    assert result.status == "failed"
    assert "estimated from the database's size times the last compression ratio" in result.error
    assert [b.manifest.subject for b in catalogue.list_backups(config.agent.backup_dir)] == [
        "shop"]
