"""The `postgres_drill` job: restore the newest dump into a scratch database and check it.

The scratch database is `<drill.scratch_prefix><database>`, made from template0 and
marked with a comment as the drill's own: a database that has the name but not the mark
(a live one that happens to match) is never dropped, and the drill fails saying so.
The dump's checksums are read while pg_restore works (hashing releases the GIL), the
restored rows are compared with the manifest's counts, the configured checks are run,
and the time is compared with the RTO target. Every statement is bounded by the job's
deadline.

Example:

    socle-agent drill postgres --database app
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from socle_agent import catalogue
from socle_agent.base import DrillFailed, DrillRecord, JobContext, JobOutcome
from socle_agent.config import Config, SqlCheck
from socle_agent.manifest import verify_files
from socle_agent.postgres.connection import (
    Connection,
    PostgresError,
    admin_connect,
    connect,
    resolve_connection,
)
from socle_agent.postgres.databases import (
    SCRATCH_MARK,
    drop_marked,
    fit_name,
    make_marked,
    row_counts,
)
from socle_agent.postgres.pgrestore import restore_dump
from socle_agent.programs import ProgramFailed

KIND = "postgres"
log = logging.getLogger(__name__)


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


def scratch_name(config: Config, database: str) -> str:
    """The scratch database of a drill of `database`, cut as PostgreSQL would cut it."""
    return fit_name(config.drill.scratch_prefix + database)


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
            row = conn.execute(sql.SQL(check.sql)).fetchone()  # type: ignore[arg-type]
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


def check_restored(
    context: JobContext, connection: Connection, database: str, backup: catalogue.Backup
) -> list[str]:
    """Compare the restored `database` with the backup's manifest and run the checks
    configured for the backed-up database."""
    with connect(context, connection, database) as conn:
        found = row_counts(conn)
        problems = compare_counts(backup.manifest.details.get("row_counts", {}), found)
        checks = [c for c in context.config.drill.checks if c.database == backup.manifest.subject]
        conn.rollback()
        conn.autocommit = True
        problems += run_checks(conn, checks)
    return problems


def drill_backup(
    context: JobContext, connection: Connection, backup: catalogue.Backup
) -> DrillReport:
    """Verify, restore into a scratch database, compare and check one backup.

    The scratch database is dropped afterwards, whatever happened.
    """
    config = context.config
    manifest = backup.manifest
    database = manifest.subject
    started = time.monotonic()
    phases: dict[str, float] = {}
    verifier = _Verifier(backup)
    verifier.start()
    problems: list[str] = []
    scratch = scratch_name(config, database)
    try:
        with _timed(phases, "restore"):
            with admin_connect(context, connection) as admin:
                make_marked(admin, scratch, SCRATCH_MARK)
            try:
                restore_dump(context, connection, backup, scratch, config.drill.restore_jobs)
            except ProgramFailed as exc:
                problems.append(f"restore: {exc}")
        with _timed(phases, "checksum"):
            problems[:0] = [f"checksum: {p}" for p in verifier.result(context)]
        if not problems:
            with _timed(phases, "compare"):
                problems += check_restored(context, connection, scratch, backup)
        # What a real restore would take: the drop below is the drill's own tidying.
        duration = time.monotonic() - started
    finally:
        verifier.join()
        with _timed(phases, "drop"), admin_connect(context, connection) as admin:
            drop_marked(admin, scratch, SCRATCH_MARK)
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

    def result(self, context: JobContext) -> list[str]:
        """The problems found, once the check is done (waiting within the deadline)."""
        while self.is_alive():
            context.check("checking the backup's checksums")
            self.join(timeout=0.5)
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
    connection = resolve_connection(context, section)
    reports = []
    for backup in newest.values():
        context.check(f"drilling {backup.manifest.id}")
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
