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

import argparse
import base64
import contextlib
import fcntl
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from socle_agent import catalogue
from socle_agent.config import Config, KubernetesConnection, PostgresSection, SqlCheck
from socle_agent.diskguard import DiskFull, check_fits
from socle_agent.jobs import (
    DrillFailed,
    DrillRecord,
    JobAborted,
    JobContext,
    JobOutcome,
    JobSpec,
    prune_kind,
    resource_locks,
)
from socle_agent.manifest import (
    FileEntry,
    HashingWriter,
    Manifest,
    file_entries,
    verify_files,
    write_manifest,
)
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


@dataclass(frozen=True)
class ClientEnv:
    """Environment and inherited descriptors for the PostgreSQL programs the agent runs."""

    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()

    def popen(self) -> dict[str, Any]:
        """Keyword arguments for subprocess: `env` and `pass_fds`."""
        return {"env": self.env, "pass_fds": self.pass_fds}


@contextlib.contextmanager
def client_env(connection: Connection) -> Iterator[ClientEnv]:
    """The password for PostgreSQL programs in an anonymous in-memory passfile.

    Nothing reaches a command line, the environment or the disk, so a killed agent
    leaves no password behind; the programs read the file through /proc/self/fd.
    """
    env = dict(os.environ)
    if connection.password is None:
        yield ClientEnv(env)
        return
    escaped = connection.password.replace("\\", "\\\\").replace(":", "\\:")
    fd = os.memfd_create("pgpass", os.MFD_CLOEXEC)
    try:
        os.write(fd, f"*:*:*:*:{escaped}\n".encode())
        # libpq ignores a passfile that others could read.
        os.fchmod(fd, 0o600)
        env["PGPASSFILE"] = f"/proc/self/fd/{fd}"
        yield ClientEnv(env, (fd,))
    finally:
        os.close(fd)


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
    client: ClientEnv,
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
            **client.popen(),
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
    with contextlib.suppress(OSError):
        # A larger pipe means fewer wake-ups of both processes per megabyte.
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK_BYTES)
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
    client: ClientEnv,
    partial: Path,
    files: list[FileEntry],
    deadline: float,
) -> None:
    """Run pg_dump into `partial/dump` and add what it wrote to `files`."""
    section = context.config.postgres
    assert section is not None
    if section.format == "custom":
        with HashingWriter(partial / "dump") as out:
            _stream([*argv, "--format=custom"], client, out, context, deadline)
        files.append(out.entry("dump"))
        return
    target = partial / "dump"
    _stream(
        [*argv, "--format=directory", f"--jobs={section.jobs}", f"--file={target}"],
        client,
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
    """Counts rows in the exported snapshot while pg_dump streams the same snapshot.

    It has its own connection, importing the snapshot, so no connection is shared
    between threads; `stop` cancels its query from another thread.
    """

    def __init__(self, conn: psycopg.Connection[Any], snapshot: str) -> None:
        super().__init__(name="row-counts", daemon=True)
        self.conn = conn
        self.snapshot = snapshot
        self.counts: dict[str, int] = {}
        self.error: Exception | None = None

    def run(self) -> None:
        try:
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
        extra connection and cannot wait on the busy one.
        """
        if self.is_alive():
            with contextlib.suppress(psycopg.Error):
                other.execute("select pg_cancel_backend(%s)", (self.conn.info.backend_pid,))
        self.join()

    def result(self) -> dict[str, int]:
        """The counts, once the thread is done; raises what the counting raised."""
        self.join()
        if self.error is not None:
            raise PostgresError(f"counting rows failed: {self.error}") from self.error
        return self.counts


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
    backup_id = catalogue.new_backup_id(root, database, time.time())
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
        client_env(connection) as client,
    ):
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
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
        with connect(connection, database, section, context.cancel) as count_conn:
            counter = _Counter(count_conn, snapshot[0])
            counter.start()
            try:
                _dump_files(context, argv, client, partial, files, deadline)
            except BaseException:
                counter.stop(conn)
                raise
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
                _stream(globals_argv, client, out, context, deadline)
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


def _scratch_name(config: Config, database: str) -> str:
    # PostgreSQL cuts identifiers at 63 bytes; cut here so the name we drop is the one made.
    return (config.drill.scratch_prefix + database)[:63]


def _admin_execute(connection: Connection, statement: sql.Composed) -> None:
    with psycopg.connect(
        connection.conninfo("postgres"), password=connection.password, autocommit=True,
        connect_timeout=10,
    ) as conn:
        conn.execute(statement)


def database_exists(connection: Connection, name: str) -> bool:
    """Whether the server has a database called `name`."""
    with psycopg.connect(
        connection.conninfo("postgres"), password=connection.password, connect_timeout=10
    ) as conn:
        row = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
    return row is not None


def drop_database(connection: Connection, name: str) -> None:
    """Drop a database if it exists, disconnecting its sessions."""
    _admin_execute(
        connection,
        sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)),
    )


def create_database(connection: Connection, name: str) -> None:
    """Create an empty database from template0 (so nothing of template1 leaks in)."""
    _admin_execute(
        connection,
        sql.SQL("create database {} template template0").format(sql.Identifier(name)),
    )


def restore_dump(
    context: JobContext,
    connection: Connection,
    backup: catalogue.Backup,
    database: str,
    jobs: int,
    keep_owners: bool = False,
    progress: Callable[[str], None] | None = None,
) -> None:
    """pg_restore the backup's dump into the existing, empty `database`, `jobs` in parallel.

    `progress` receives a line per restored item ("[12/40] TABLE DATA public orders").
    """
    section = context.config.postgres
    assert section is not None
    dump = backup.path / "dump"
    argv = [
        section.command("pg_restore"),
        "--exit-on-error",
        f"--jobs={jobs}",
        "--dbname",
        connection.conninfo(database),
    ]
    if not keep_owners:
        argv += ["--no-owner", "--no-acl"]
    with client_env(connection) as client:
        total = 0
        if progress is not None:
            listing = subprocess.run(
                [section.command("pg_restore"), "--list", str(dump)],
                capture_output=True, text=True, **client.popen(),
            )
            total = sum(1 for line in listing.stdout.splitlines() if line[:1].isdigit())
            argv.append("--verbose")
        deadline = time.monotonic() + section.timeout_seconds
        _run_with_lines([*argv, str(dump)], client, context, deadline, progress, total)


# Serial steps say "processing item N WHAT", parallel ones "finished item N WHAT". The
# workers and the leader share stderr and write a line in pieces, so a line can carry a
# piece of another ("pg_restore: pg_restore: finished item ..."): search, don't anchor.
_ITEM_DONE = re.compile(r"(?:processing|finished) item \d+ (.+?)(?:pg_restore: .*)?$")


def _run_with_lines(
    argv: list[str],
    client: ClientEnv,
    context: JobContext,
    deadline: float,
    progress: Callable[[str], None] | None,
    total: int,
) -> None:
    """Run a program; pass its "processing item" lines to `progress`; raise on failure."""
    if progress is None:
        _stream(argv, client, None, context, deadline)
        return
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, **client.popen(),
    )
    assert process.stderr is not None
    tail: list[str] = []
    done = 0
    for line in process.stderr:
        text = line.rstrip().removeprefix("pg_restore: ")
        item = _ITEM_DONE.search(text)
        if item:
            done += 1
            progress(f"[{done}/{total}] {item.group(1)}")
        elif not text.startswith(("launching item", "creating", "processing data", "executing")):
            tail = (tail + [text])[-20:]
    process.wait()
    if process.returncode != 0:
        message = "\n".join(t for t in tail if t)
        raise PostgresError(f"pg_restore exited with {process.returncode}: {message}")


@dataclass(frozen=True)
class DrillReport:
    """What a drill of one backup found: problems (empty if it passed) and its duration."""

    backup_id: str
    database: str
    duration: float
    problems: tuple[str, ...]
    over_rto: bool = False
    phases: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """E.g. "app-20261126T023000Z passed in 8.7 s (checksum 0.3 s, restore 8.2 s, ...)".

        The duration runs to the end of the checks; dropping the scratch database after
        them is shown apart, as it is no part of a real restore.
        """
        verdict = "FAILED" if self.problems else "passed"
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.phases.items())
        return f"{self.backup_id} {verdict} in {self.duration:.1f} s ({steps})"


def compare_counts(expected: dict[str, int], found: dict[str, int]) -> list[str]:
    """Differences between the manifest's row counts and the restored database's."""
    problems = []
    for table in sorted(set(expected) | set(found)):
        if table not in found:
            problems.append(f"table {table} is in the manifest but was not restored")
        elif table not in expected:
            problems.append(f"table {table} was restored but is not in the manifest")
        elif expected[table] != found[table]:
            problems.append(
                f"row count of {table}: {found[table]} restored, {expected[table]} in the manifest"
            )
    return problems


def run_checks(conn: psycopg.Connection[Any], checks: list[SqlCheck]) -> list[str]:
    """Run the configured SQL checks; returns one problem per failed check."""
    problems = []
    for check in checks:
        try:
            row = conn.execute(sql.SQL(check.sql)).fetchone()
        except psycopg.Error as exc:
            conn.rollback()
            problems.append(f"check {check.sql!r} failed: {str(exc).strip()}")
            continue
        value = row[0] if row else None
        if check.expect is None and not value:
            problems.append(f"check {check.sql!r} returned {value!r}, not true")
        elif check.expect is not None and str(value) != check.expect:
            problems.append(f"check {check.sql!r} returned {value!r}, expected {check.expect!r}")
    return problems


def drill_backup(
    context: JobContext, connection: Connection, backup: catalogue.Backup
) -> DrillReport:
    """Verify, restore into a scratch database, compare and check one backup.

    The scratch database is dropped afterwards, whatever happened.
    """
    config = context.config
    section = config.postgres
    assert section is not None
    manifest = backup.manifest
    database = manifest.subject
    started = time.monotonic()
    phases: dict[str, float] = {}
    # The checksums are read while pg_restore works (hashing releases the GIL), so a good
    # backup's drill does not pay for reading it twice in a row; a bad one is reported
    # as such whatever pg_restore made of it.
    verifier = _Verifier(backup)
    verifier.start()
    problems: list[str] = []
    scratch = _scratch_name(config, database)
    try:
        with _timed(phases, "restore"):
            drop_database(connection, scratch)
            create_database(connection, scratch)
            try:
                restore_dump(context, connection, backup, scratch, config.drill.restore_jobs)
            except PostgresError as exc:
                problems.append(f"restore: {exc}")
        with _timed(phases, "checksum"):
            problems[:0] = [f"checksum: {p}" for p in verifier.result()]
        if not problems:
            with (
                _timed(phases, "compare"),
                connect(connection, scratch, section, context.cancel) as conn,
            ):
                found = row_counts(conn)
                problems += compare_counts(manifest.details.get("row_counts", {}), found)
                checks = [c for c in config.drill.checks if c.database == database]
                conn.rollback()
                conn.autocommit = True
                problems += run_checks(conn, checks)
        # What a real restore would take: the drop below is the drill's own tidying.
        duration = time.monotonic() - started
    finally:
        verifier.join()
        with _timed(phases, "drop"):
            drop_database(connection, scratch)
    target = config.drill.rto_seconds.get(KIND)
    return DrillReport(
        manifest.id,
        database,
        duration,
        tuple(problems),
        target is not None and duration > target,
        phases,
    )


class _Verifier(threading.Thread):
    """Checks a backup's files against its manifest in the background."""

    def __init__(self, backup: catalogue.Backup) -> None:
        super().__init__(name="verify", daemon=True)
        self.backup = backup
        self.problems: list[str] = []

    def run(self) -> None:
        try:
            self.problems = verify_files(self.backup.path, self.backup.manifest)
        except OSError as exc:
            self.problems = [f"cannot read the backup: {exc}"]

    def result(self) -> list[str]:
        """The problems found, once the check is done."""
        self.join()
        return self.problems


@contextlib.contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        phases[name] = time.monotonic() - start


def drill_job(context: JobContext) -> JobOutcome:
    """Job postgres_drill: drill the newest backup of each database; fail if any fails."""
    config = context.config
    section = config.postgres
    if section is None:
        raise PostgresError("there is no [postgres] section in the configuration")
    started = time.monotonic()
    wanted = context.options.get("database")
    newest: dict[str, catalogue.Backup] = {}
    for backup in catalogue.list_backups(config.agent.backup_dir, KIND, wanted):
        newest[backup.manifest.subject] = backup
    if not newest:
        raise DrillFailed(KIND, "no backup to drill", time.monotonic() - started)
    connection = resolve_connection(section)
    reports = []
    for backup in newest.values():
        context.check_cancel()
        report = drill_backup(context, connection, backup)
        log.info("drill: %s%s", report.describe(), "; ".join(("", *report.problems)))
        if not report.problems:
            catalogue.mark_verified(backup)
        reports.append(report)
    duration = time.monotonic() - started
    failed = [f"{r.backup_id}: {'; '.join(r.problems)}" for r in reports if r.problems]
    if failed:
        raise DrillFailed(KIND, " | ".join(failed), duration)
    slow = [r.backup_id for r in reports if r.over_rto]
    note = f", over the RTO target of {config.drill.rto_seconds[KIND]:.0f} s" if slow else ""
    summary = ", ".join(r.describe() for r in reports) + note
    return JobOutcome(summary=summary, drill=DrillRecord(KIND, True, duration, note.strip(", ")))


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `socle-agent restore postgres`."""
    parser.add_argument("--backup", required=True, metavar="ID", help="backup id (see `list`)")
    parser.add_argument("--database", required=True, metavar="NAME", help="database to create")
    parser.add_argument(
        "--drop-existing", "--force", dest="drop_existing", action="store_true",
        help="replace the database if it exists (it is dropped first)",
    )
    parser.add_argument(
        "--with-roles", action="store_true",
        help="restore roles and tablespaces (globals.sql) first, and keep owners and grants",
    )
    parser.add_argument("--jobs", type=int, default=2, help="pg_restore -j (default 2)")


def restore(config: Config, args: argparse.Namespace) -> int:
    """`socle-agent restore postgres`: restore a backup into a database, printing progress."""
    section = config.postgres
    if section is None:
        print("there is no [postgres] section in the configuration", file=sys.stderr)
        return 2
    try:
        backup = catalogue.find_backup(config.agent.backup_dir, args.backup, KIND)
    except LookupError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    context = JobContext(config)
    with resource_locks(config.agent.lock_dir, (KIND,)) as acquired:
        if not acquired:
            print("another PostgreSQL job is running; try again later", file=sys.stderr)
            return 75
        try:
            return _restore(context, backup, args)
        except (PostgresError, psycopg.Error) as exc:
            print(f"restore failed: {exc}", file=sys.stderr)
            return 1


def _restore(context: JobContext, backup: catalogue.Backup, args: argparse.Namespace) -> int:
    config = context.config
    section = config.postgres
    assert section is not None
    started = time.monotonic()
    print(f"checking {backup.manifest.id} against its manifest")
    problems = verify_files(backup.path, backup.manifest)
    if problems:
        print("refusing to restore a damaged backup: " + "; ".join(problems), file=sys.stderr)
        return 1
    connection = resolve_connection(section)
    if database_exists(connection, args.database):
        if not args.drop_existing:
            print(
                f"database {args.database!r} exists; refusing to overwrite it "
                "(use --drop-existing to replace it)",
                file=sys.stderr,
            )
            return 1
        print(f"dropping the existing database {args.database!r}")
        drop_database(connection, args.database)
    if args.with_roles:
        globals_file = backup.path / "globals.sql"
        if not globals_file.exists():
            print("this backup holds no roles (globals.sql)", file=sys.stderr)
            return 1
        print("restoring roles and tablespaces")
        with client_env(connection) as client:
            done = subprocess.run(
                [section.command("psql"), "-X", "-q", "--dbname", connection.conninfo("postgres"),
                 "-f", str(globals_file)],
                capture_output=True, text=True, **client.popen(),
            )
        for line in done.stderr.splitlines():
            # A role that already exists is reported and left as it is.
            print(f"  {line}")
    print(f"creating database {args.database!r}")
    create_database(connection, args.database)
    print(f"restoring with pg_restore -j {args.jobs}")
    restore_dump(
        context, connection, backup, args.database, args.jobs, keep_owners=args.with_roles,
        progress=lambda line: print(f"  {line}", flush=True),
    )
    with connect(connection, args.database, section, context.cancel) as conn:
        differences = compare_counts(backup.manifest.details.get("row_counts", {}),
                                     row_counts(conn))
    for difference in differences:
        print(f"  warning: {difference}")
    tables = len(backup.manifest.details.get("row_counts", {}))
    print(
        f"restored {backup.manifest.id} into {args.database!r} in "
        f"{time.monotonic() - started:.1f} s; {tables - len(differences)} of {tables} tables "
        "match the manifest's row counts"
    )
    return 0 if not differences else 1


JOBS = {
    "postgres_backup": JobSpec(backup_job, (KIND,)),
    "postgres_drill": JobSpec(drill_job, (KIND,)),
}
