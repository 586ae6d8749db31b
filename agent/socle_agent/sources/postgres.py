"""PostgreSQL: dumps with pg_dump, streamed to disk, checksummed, with a manifest.

A dump of database `app` becomes `<backup_dir>/postgres/app-<UTC time>/` holding
`dump` (custom format, or a directory for the directory format), `globals.sql` (roles
and tablespaces from `pg_dumpall --globals-only`) and `manifest.json` (versions, times,
sizes, sha256, and the row count of every table, counted in the very snapshot pg_dump
dumps). It is written as `<id>.partial` and renamed only once complete and fsynced.

Example:

    socle-agent backup postgres --database app
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from socle_agent import catalogue
from socle_agent.config import Config, KubernetesConnection, PostgresSection
from socle_agent.diskguard import DiskFull, check_fits
from socle_agent.jobs import JobAborted, JobContext, JobOutcome, JobSpec, prune_kind
from socle_agent.manifest import FileEntry, HashingWriter, Manifest, file_entries, write_manifest
from socle_agent.state import fsync_dir

KIND = "postgres"
CHUNK_BYTES = 1 << 20
STDERR_TAIL_BYTES = 4000
log = logging.getLogger(__name__)


class PostgresError(Exception):
    """PostgreSQL or one of its programs failed; the message says which and why."""


@dataclass(frozen=True)
class Connection:
    """Where and as whom to connect; the password stays out of command lines."""

    host: str
    port: int
    user: str
    password: str | None = None
    dsn: str | None = None

    def conninfo(self, database: str) -> str:
        """A libpq connection string for `database` (without the password)."""
        if self.dsn:
            return make_conninfo(self.dsn, dbname=database)
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=database)

    def describe(self) -> str:
        """Where the server is, for messages."""
        if self.dsn:
            params = psycopg.conninfo.conninfo_to_dict(self.dsn)
            return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
        return f"{self.host}:{self.port}"


def resolve_connection(section: PostgresSection, core_api: Any = None) -> Connection:
    """The connection the configuration describes.

    With [postgres.kubernetes] the address is the Service's cluster IP and port and the
    password is read from the Secret, with `core_api` (a kubernetes CoreV1Api; made from
    the in-cluster or kubeconfig credentials when not given).
    """
    if section.kubernetes is not None:
        api = core_api if core_api is not None else core_api_for(section.kubernetes)
        return connection_from_cluster(section.kubernetes, section.user, api)
    password = None
    if section.password_file is not None:
        password = section.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    return Connection(section.host, section.port, section.user, password, section.dsn)


def core_api_for(kube: KubernetesConnection) -> Any:
    """A CoreV1Api client: the given kubeconfig, else in-cluster, else the default kubeconfig."""
    # Imported here: the client is large, and most runs of the agent never need it.
    from kubernetes import client
    from kubernetes import config as kube_config

    if kube.kubeconfig is not None:
        kube_config.load_kube_config(config_file=str(kube.kubeconfig))
    else:
        try:
            kube_config.load_incluster_config()
        except kube_config.ConfigException:
            kube_config.load_kube_config()
    return client.CoreV1Api()


def connection_from_cluster(kube: KubernetesConnection, user: str, api: Any) -> Connection:
    """Read the Service's address and the Secret's credentials through `api`."""
    service = api.read_namespaced_service(kube.service, kube.namespace)
    host = service.spec.cluster_ip
    if not host or host == "None":
        raise PostgresError(f"service {kube.namespace}/{kube.service} has no cluster IP")
    ports = service.spec.ports or []
    if kube.port_name is not None:
        ports = [p for p in ports if p.name == kube.port_name]
    if not ports:
        wanted = f" named {kube.port_name!r}" if kube.port_name else ""
        raise PostgresError(f"service {kube.namespace}/{kube.service} has no port{wanted}")
    secret = api.read_namespaced_secret(kube.secret, kube.namespace)
    data = secret.data or {}

    def decoded(key: str) -> str:
        if key not in data:
            raise PostgresError(f"secret {kube.namespace}/{kube.secret} has no key {key!r}")
        return base64.b64decode(data[key]).decode("utf-8")

    if kube.user_key is not None:
        user = decoded(kube.user_key)
    return Connection(host, int(ports[0].port), user, decoded(kube.password_key))


@contextlib.contextmanager
def client_env(connection: Connection) -> Iterator[dict[str, str]]:
    """Environment for PostgreSQL programs: the password in a private, temporary passfile."""
    env = dict(os.environ)
    if connection.password is None:
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="socle-pg-") as tmp:
        passfile = Path(tmp) / "pgpass"
        escaped = connection.password.replace("\\", "\\\\").replace(":", "\\:")
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"*:*:*:*:{escaped}\n")
        env["PGPASSFILE"] = str(passfile)
        yield env


def connect(
    connection: Connection, database: str, section: PostgresSection, cancel: threading.Event
) -> psycopg.Connection[Any]:
    """Connect, retrying `connect_attempts` times `retry_delay_seconds` apart."""
    last_error: Exception | None = None
    for attempt in range(1, section.connect_attempts + 1):
        try:
            return psycopg.connect(
                connection.conninfo(database), password=connection.password, connect_timeout=10
            )
        except psycopg.OperationalError as exc:
            last_error = exc
            log.warning(
                "connecting to %s (attempt %d of %d): %s",
                connection.describe(),
                attempt,
                section.connect_attempts,
                str(exc).strip(),
            )
            if attempt < section.connect_attempts and cancel.wait(section.retry_delay_seconds):
                raise JobAborted("the agent is stopping") from exc
    raise PostgresError(
        f"cannot connect to PostgreSQL at {connection.describe()} after "
        f"{section.connect_attempts} attempts: {str(last_error).strip()}"
    )


def list_databases(conn: psycopg.Connection[Any]) -> list[str]:
    """Databases worth dumping: every one that accepts connections, but templates and `postgres`."""
    rows = conn.execute(
        "select datname from pg_database where datallowconn and not datistemplate"
        " and datname <> 'postgres' order by datname"
    ).fetchall()
    return [row[0] for row in rows]


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Exact row count of every ordinary table outside the system schemas."""
    tables = conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')"
        " and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'"
        " order by 1, 2"
    ).fetchall()
    counts = {}
    for schema, table in tables:
        query = sql.SQL("select count(*) from {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def program_version(section: PostgresSection, program: str) -> str:
    """The version line of a PostgreSQL program, e.g. "pg_dump (PostgreSQL) 15.14"."""
    done = subprocess.run(
        [section.command(program), "--version"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _stream(
    argv: list[str],
    env: dict[str, str],
    out: HashingWriter | None,
    context: JobContext,
    deadline: float,
) -> None:
    """Run a program, pouring its stdout into `out` chunk by chunk; raise on failure."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if out else subprocess.DEVNULL,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        try:
            if out is not None:
                _pump(process, out, context, deadline, Path(argv[0]).name)
            while process.poll() is None:
                context.check_cancel()
                if time.monotonic() > deadline:
                    raise PostgresError(f"{Path(argv[0]).name} ran past the timeout")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.5)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.returncode != 0:
            stderr.seek(0, os.SEEK_END)
            stderr.seek(max(0, stderr.tell() - STDERR_TAIL_BYTES))
            tail = stderr.read().decode("utf-8", "replace").strip()
            raise PostgresError(f"{Path(argv[0]).name} exited with {process.returncode}: {tail}")


def _pump(
    process: subprocess.Popen[bytes],
    out: HashingWriter,
    context: JobContext,
    deadline: float,
    program: str,
) -> None:
    pipe: IO[bytes] | None = process.stdout
    assert pipe is not None
    fd = pipe.fileno()
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 1.0)
            context.check_cancel()
            if time.monotonic() > deadline:
                raise PostgresError(f"{program} ran past the timeout")
            if not ready:
                continue
            chunk = os.read(fd, CHUNK_BYTES)
            if not chunk:
                return
            out.write(chunk)
    finally:
        pipe.close()


def _dump_files(
    context: JobContext,
    argv: list[str],
    env: dict[str, str],
    partial: Path,
    files: list[FileEntry],
    deadline: float,
) -> None:
    """Run pg_dump into `partial/dump` and add what it wrote to `files`."""
    section = context.config.postgres
    assert section is not None
    if section.format == "custom":
        with HashingWriter(partial / "dump") as out:
            _stream([*argv, "--format=custom"], env, out, context, deadline)
        files.append(out.entry("dump"))
        return
    target = partial / "dump"
    _stream(
        [*argv, "--format=directory", f"--jobs={section.jobs}", f"--file={target}"],
        env,
        None,
        context,
        deadline,
    )
    for path in target.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(target)
    files += file_entries(target, partial)


class _Counter(threading.Thread):
    """Counts rows in the exported snapshot while pg_dump streams the same snapshot."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(name="row-counts", daemon=True)
        self.conn = conn
        self.counts: dict[str, int] = {}
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.counts = row_counts(self.conn)
        except Exception as exc:
            self.error = exc

    def result(self) -> dict[str, int]:
        """The counts, once the thread is done; raises what the counting raised."""
        self.join()
        if self.error is not None:
            raise PostgresError(f"counting rows failed: {self.error}") from self.error
        return self.counts


def _new_id(root: Path, database: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    backup_id, n = f"{database}-{stamp}", 1
    while (root / backup_id).exists() or (root / (backup_id + catalogue.PARTIAL_SUFFIX)).exists():
        n += 1
        backup_id = f"{database}-{stamp}-{n}"
    return backup_id


def expected_size(config: Config, database: str) -> int:
    """Bytes the next dump of `database` is expected to need: the last one's, with margin."""
    previous = catalogue.newest(config.agent.backup_dir, KIND, database)
    if previous is None:
        return 0
    return int(previous.manifest.size_bytes * config.disk.growth_factor)


def dump_database(context: JobContext, connection: Connection, database: str) -> catalogue.Backup:
    """Dump one database into a new backup and return it (see the module docstring)."""
    config = context.config
    section = config.postgres
    assert section is not None
    root = catalogue.kind_dir(config.agent.backup_dir, KIND)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    verdict = check_fits(root, expected_size(config, database), config.disk)
    if not verdict.fits:
        raise DiskFull(verdict.reason)
    backup_id = _new_id(root, database)
    partial = root / (backup_id + catalogue.PARTIAL_SUFFIX)
    partial.mkdir(mode=0o700)
    try:
        manifest = _dump_into(context, connection, database, backup_id, partial)
        write_manifest(partial, manifest)
        fsync_dir(partial)
        final = root / backup_id
        partial.rename(final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return catalogue.Backup(final, manifest)


def _dump_into(
    context: JobContext, connection: Connection, database: str, backup_id: str, partial: Path
) -> Manifest:
    section = context.config.postgres
    assert section is not None
    deadline = time.monotonic() + section.timeout_seconds
    started = time.time()
    files: list[FileEntry] = []
    with (
        connect(connection, database, section, context.cancel) as conn,
        client_env(connection) as env,
    ):
        conn.execute("begin isolation level repeatable read read only")
        snapshot = conn.execute("select pg_export_snapshot()").fetchone()
        server_version = conn.execute("show server_version").fetchone()
        assert snapshot is not None and server_version is not None
        argv = [
            section.command("pg_dump"),
            f"--snapshot={snapshot[0]}",
            f"--compress={section.compression}",
            "--dbname",
            connection.conninfo(database),
        ]
        # The exported snapshot lives as long as this transaction: row counts taken in it
        # describe exactly what pg_dump dumps. They are counted while pg_dump streams.
        counter = _Counter(conn)
        counter.start()
        try:
            _dump_files(context, argv, env, partial, files, deadline)
        finally:
            if counter.is_alive():
                # pg_dump failed or was stopped: stop counting too, then report.
                conn.cancel_safe()
                counter.join()
        counts = counter.result()
        conn.rollback()
        if section.dump_roles:
            globals_argv = [
                section.command("pg_dumpall"),
                "--globals-only",
                "--dbname",
                connection.conninfo("postgres"),
            ]
            if section.roles_without_passwords:
                globals_argv.append("--no-role-passwords")
            with HashingWriter(partial / "globals.sql") as out:
                _stream(globals_argv, env, out, context, deadline)
            files.append(out.entry("globals.sql"))
    return Manifest(
        id=backup_id,
        kind=KIND,
        subject=database,
        started=started,
        finished=time.time(),
        format=section.format,
        files=tuple(files),
        details={
            "database": database,
            "server_version": server_version[0],
            "pg_dump_version": program_version(section, "pg_dump"),
            "compression": section.compression,
            "host": connection.describe(),
            "row_counts": counts,
        },
    )


def backup_job(context: JobContext) -> JobOutcome:
    """Job postgres_backup: dump the configured databases (or `options["database"]`), then prune."""
    config = context.config
    section = config.postgres
    if section is None:
        raise PostgresError("there is no [postgres] section in the configuration")
    catalogue.remove_partials(config.agent.backup_dir, KIND)
    connection = resolve_connection(section)
    databases = [context.options["database"]] if context.options.get("database") else []
    if not databases:
        databases = list(section.databases)
    if not databases:
        with connect(connection, "postgres", section, context.cancel) as conn:
            databases = list_databases(conn)
    written, failures = [], []
    for database in databases:
        context.check_cancel()
        try:
            written.append(dump_database(context, connection, database))
        except (JobAborted, DiskFull):
            raise
        except Exception as exc:
            log.error("backup of %s failed: %s", database, exc)
            failures.append(f"{database}: {exc}")
    if failures:
        raise PostgresError("; ".join(failures))
    prune_kind(config, KIND)
    size = sum(b.manifest.size_bytes for b in written)
    return JobOutcome(
        size_bytes=size,
        summary=", ".join(f"{b.manifest.id} ({b.manifest.size_bytes} bytes)" for b in written),
    )


JOBS = {"postgres_backup": JobSpec(backup_job, (KIND,))}
