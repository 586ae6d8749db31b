"""The `postgres_backup` job: pg_dump streamed into the catalogue, checksummed, counted.

A dump of database `app` becomes `<backup_dir>/postgres/app-<UTC time>/` holding `dump`
(by default pg_dump's directory format, written by parallel workers with light
compression and each file checksummed as soon as it is closed; or the custom format,
one file checksummed as it streams), `globals.sql` (roles and tablespaces from
`pg_dumpall --globals-only`) and `manifest.json` (versions, times, compression, sizes,
sha256, and the row count of every table counted in the very snapshot pg_dump dumps).
It is written by the one `BackupWriter`: disk guard, `.partial`, fsync, rename.

Example:

    socle-agent backup postgres --database app
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from socle_agent import catalogue
from socle_agent.base import JobAborted, JobContext, JobOutcome
from socle_agent.diskguard import DiskFull
from socle_agent.postgres import compression
from socle_agent.postgres.connection import (
    ClientEnv,
    Connection,
    PostgresError,
    client_env,
    connect,
    resolve_connection,
)
from socle_agent.postgres.databases import list_databases, row_counts, table_bytes
from socle_agent.programs import run_program
from socle_agent.pruning import prune_kind
from socle_agent.writer import BackupWriter

KIND = "postgres"
RATIO_ESTIMATE = "the database's size times the last compression ratio"
log = logging.getLogger(__name__)


def program_version(context: JobContext, program: str) -> str:
    """The version line of a PostgreSQL program, e.g. "pg_dump (PostgreSQL) 15.14"."""
    section = context.config.postgres
    assert section is not None
    done = subprocess.run(
        [section.command(program), "--version"], capture_output=True, text=True, check=True,
        timeout=context.timeout(60),
    )  # fmt: skip
    return done.stdout.strip()


def last_ratio(context: JobContext) -> float | None:
    """Bytes written per byte of table in the newest dump that recorded both."""
    for backup in reversed(catalogue.list_backups(context.config.agent.backup_dir, KIND)):
        tables = backup.manifest.details.get("table_bytes")
        if tables:
            return float(backup.manifest.size_bytes / tables)
    return None


class _Counter(threading.Thread):
    """Counts rows in the exported snapshot while pg_dump streams the same snapshot.

    It has its own connection, importing the snapshot, so no connection is shared
    between threads; its statements are bounded by the job's deadline and lock timeout.
    `stop` cancels its query from another thread.
    """

    def __init__(self, conn: psycopg.Connection[Any], snapshot: str) -> None:
        super().__init__(name="row-counts", daemon=True)
        self.conn = conn
        self.snapshot = snapshot
        self.counts: dict[str, int] = {}
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            # One process: the count is small next to the dump, whose workers need the CPU.
            self.conn.execute("set max_parallel_workers_per_gather = 0")
            self.conn.commit()
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self.conn.read_only = True
            self.conn.execute(
                sql.SQL("set transaction snapshot {}").format(sql.Literal(self.snapshot))
            )
            self.counts = row_counts(self.conn)
            self.conn.rollback()
        except Exception as exc:
            self.error = exc

    def stop(self, other: psycopg.Connection[Any]) -> None:
        """Cancel the counting (pg_dump failed or the agent is stopping) and wait for it.

        The cancel goes through `other`, an idle connection, as plain SQL: it needs no
        extra connection and cannot wait on the busy one. The statement timeout bounds
        the wait should the cancel be lost.
        """
        if self.is_alive():
            with contextlib.suppress(psycopg.Error):
                other.execute("select pg_cancel_backend(%s)", (self.conn.info.backend_pid,))
        self.join()

    def result(self, context: JobContext) -> dict[str, int]:
        """The counts, once the thread is done (waiting within the job's deadline)."""
        while self.is_alive():
            context.check("counting rows")
            self.join(timeout=0.5)
        if self.error is not None:
            raise PostgresError(f"counting rows failed: {self.error}") from self.error
        return self.counts


def dump_database(context: JobContext, connection: Connection, database: str) -> catalogue.Backup:
    """Dump one database into a new backup and return it (see the module docstring)."""
    config = context.config
    section = config.postgres
    assert section is not None
    pg_dump_version = program_version(context, "pg_dump")
    chosen = compression.choose(
        section.compression, pg_dump_version, compression.probe_with(section.command("pg_dump"))
    )
    with (
        connect(context, connection, database) as conn,
        client_env(connection, context) as client,
        BackupWriter(config.agent.backup_dir, KIND, database,
                     state_file=config.agent.state_file) as writer,
    ):
        tables = table_bytes(conn)
        ratio = last_ratio(context)
        writer.guard(config.disk, {RATIO_ESTIMATE: int(tables * ratio)} if ratio else {})
        conn.rollback()
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = conn.execute("select pg_export_snapshot()").fetchone()
        server_version = conn.execute("show server_version").fetchone()
        assert snapshot is not None and server_version is not None
        lock_ms = int(section.lock_timeout_seconds * 1000)
        argv = [
            section.command("pg_dump"),
            f"--snapshot={snapshot[0]}",
            f"--compress={chosen.argument}",
            f"--lock-wait-timeout={lock_ms}",
            "--dbname",
            connection.conninfo(database),
        ]
        # The exported snapshot lives as long as this transaction: row counts taken in it
        # describe exactly what pg_dump dumps. They are counted while pg_dump streams.
        with connect(context, connection, database) as count_conn:
            counter = _Counter(count_conn, snapshot[0])
            counter.start()
            try:
                _run_pg_dump(context, argv, client, writer)
            except BaseException:
                counter.stop(conn)
                raise
            counts = counter.result(context)
        conn.rollback()
        if section.dump_roles:
            _dump_globals(context, connection, client, writer)
        return writer.commit(
            format=section.format,
            details={
                "database": database,
                "server_version": server_version[0],
                "pg_dump_version": pg_dump_version,
                "compression": chosen.described,
                "jobs": section.jobs if section.format == "directory" else 1,
                "table_bytes": tables,
                "host": connection.describe(),
                "row_counts": counts,
            },
        )


def _run_pg_dump(
    context: JobContext, argv: list[str], client: ClientEnv, writer: BackupWriter
) -> None:
    section = context.config.postgres
    assert section is not None
    if section.format == "custom":
        with writer.file("dump") as out:
            run_program([*argv, "--format=custom"], context, env=client.env,
                        pass_fds=client.pass_fds, stdout=out)
        return
    with writer.folder("dump") as target:
        run_program(
            [*argv, "--format=directory", f"--jobs={section.jobs}", f"--file={target}"],
            context, env=client.env, pass_fds=client.pass_fds,
        )  # fmt: skip


def _dump_globals(
    context: JobContext, connection: Connection, client: ClientEnv, writer: BackupWriter
) -> None:
    section = context.config.postgres
    assert section is not None
    argv = [
        section.command("pg_dumpall"),
        "--globals-only",
        "--dbname",
        connection.conninfo("postgres"),
    ]
    if section.roles_without_passwords:
        argv.append("--no-role-passwords")
    with writer.file("globals.sql") as out:
        run_program(argv, context, env=client.env, pass_fds=client.pass_fds, stdout=out)


def backup_job(context: JobContext) -> JobOutcome:
    """Job postgres_backup: dump the configured databases (or `options["database"]`), then prune."""
    config = context.config
    section = config.postgres
    if section is None:
        raise PostgresError("there is no [postgres] section in the configuration")
    catalogue.remove_partials(config.agent.backup_dir, KIND)
    connection = resolve_connection(context, section)
    databases = [context.options["database"]] if context.options.get("database") else []
    if not databases:
        databases = list(section.databases)
    if not databases:
        with connect(context, connection, "postgres") as conn:
            databases = list_databases(conn)
    written, failures = [], []
    for database in databases:
        context.check(f"dumping {database}")
        started = time.monotonic()
        try:
            written.append(dump_database(context, connection, database))
        except (JobAborted, DiskFull):
            raise
        except Exception as exc:
            log.error("backup of %s failed after %.1f s: %s", database,
                      time.monotonic() - started, exc)
            failures.append(f"{database}: {exc}")
    if failures:
        raise PostgresError("; ".join(failures))
    prune_kind(config, KIND)
    size = sum(b.manifest.size_bytes for b in written)
    return JobOutcome(
        size_bytes=size,
        summary=", ".join(f"{b.manifest.id} ({b.manifest.size_bytes} bytes)" for b in written),
    )
