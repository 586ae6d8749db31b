"""`socle-agent restore postgres`: a restore that can never lose the live database.

The backup is restored beside the live database, never over it:

1. the backup's files are checked against its manifest (refused if damaged);
2. with `--with-roles`, roles missing on the server are created from `globals.sql`
   (existing roles are left as they are; `--reset-role-passwords` is a separate choice);
3. a new database `<name>_restoring_<time>`, marked as the agent's, receives the dump
   (owners and grants kept) and is compared with the manifest's row counts and the
   configured checks;
4. only then, in one transaction, the live database is renamed `<name>_before_<time>`
   and the new one takes its name; with `--no-keep-previous` the old one is dropped
   after that transaction committed.

A failure at any step drops the new database and leaves the live one as it was.

Example:

    socle-agent restore postgres --backup app-20261126T023000Z --database app --replace
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from socle_agent import catalogue
from socle_agent.base import JobContext, RestoreError, RestoreRefused
from socle_agent.manifest import verify_files
from socle_agent.postgres.connection import Connection, admin_connect, client_env
from socle_agent.postgres.databases import (
    STAGING_MARK,
    drop,
    drop_marked,
    exists,
    fit_name,
    make_marked,
    set_mark,
)
from socle_agent.postgres.drill import check_restored
from socle_agent.postgres.pgrestore import RestoreProgramFailed, restore_dump
from socle_agent.postgres.roles import plan_roles
from socle_agent.programs import ProgramFailed, run_program
from socle_agent.source import Report

KIND = "postgres"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreRequest:
    """What the operator asked for."""

    backup_id: str
    database: str
    replace: bool = False
    keep_previous: bool = True
    with_roles: bool = False
    reset_role_passwords: bool = False
    jobs: int = 2


def restore_backup(
    context: JobContext, connection: Connection, request: RestoreRequest, report: Report
) -> str:
    """Restore as the module docstring says; returns the closing line for the operator."""
    started = time.monotonic()
    config = context.config
    backup = catalogue.find_backup(config.agent.backup_dir, request.backup_id, KIND)
    report(f"checking {backup.manifest.id} against its manifest")
    problems = verify_files(backup.path, backup.manifest)
    if problems:
        raise RestoreRefused("refusing to restore a damaged backup: " + "; ".join(problems))
    globals_file = backup.path / "globals.sql"
    if (request.with_roles or request.reset_role_passwords) and not globals_file.exists():
        raise RestoreRefused(f"{backup.manifest.id} holds no roles (no globals.sql)")
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    staging = fit_name(f"{request.database}_restoring_{stamp}")
    previous = fit_name(f"{request.database}_before_{stamp}")
    with admin_connect(context, connection) as admin:
        live_exists = exists(admin, request.database)
        if live_exists and not request.replace:
            raise RestoreRefused(
                f"database {request.database!r} exists; refusing to touch it (use --replace "
                "to swap the restored copy in, keeping this one as the previous copy)"
            )
        for name in (staging, previous):
            if exists(admin, name):
                raise RestoreRefused(f"database {name!r} exists already; try again in a second")
    if request.with_roles or request.reset_role_passwords:
        _restore_roles(context, connection, globals_file.read_text(), request, report)
    report(f"restoring into the new database {staging!r} with pg_restore -j {request.jobs}")
    with admin_connect(context, connection) as admin:
        make_marked(admin, staging, STAGING_MARK)
    try:
        try:
            restore_dump(context, connection, backup, staging, request.jobs, keep_owners=True,
                         progress=lambda line: report(f"  {line}"))
        except RestoreProgramFailed as exc:
            hint = "" if request.with_roles else (
                " (if a role does not exist, --with-roles creates the backup's missing roles)")
            raise RestoreError(f"restore failed, {request.database!r} untouched: {exc}{hint}"
                               ) from exc
        report("comparing the new database with the manifest")
        differences = check_restored(context, connection, staging, backup)
        if differences:
            raise RestoreError(
                f"the restored copy does not match the manifest, {request.database!r} "
                "untouched: " + "; ".join(differences)
            )
        _swap(context, connection, request.database, staging, previous, live_exists,
              f"{backup.manifest.id} at {stamp}", report)
    except BaseException:
        with admin_connect(context, connection) as admin:
            drop_marked(admin, staging, STAGING_MARK)
        raise
    kept = ""
    if live_exists and request.keep_previous:
        kept = f"; the previous database is kept as {previous!r} until you drop it"
    elif live_exists:
        with admin_connect(context, connection) as admin:
            drop(admin, previous)
        kept = "; the previous database was dropped"
    tables = len(backup.manifest.details.get("row_counts", {}))
    return (
        f"restored {backup.manifest.id} into {request.database!r} in "
        f"{time.monotonic() - started:.1f} s; {tables} of {tables} tables match the "
        f"manifest's row counts{kept}"
    )


def _restore_roles(
    context: JobContext, connection: Connection, globals_sql: str, request: RestoreRequest,
    report: Report,
) -> None:
    section = context.config.postgres
    assert section is not None
    with admin_connect(context, connection) as admin:
        roles = {row[0] for row in admin.execute("select rolname from pg_roles")}
        spaces = {row[0] for row in admin.execute("select spcname from pg_tablespace")}
    plan = plan_roles(globals_sql, roles, spaces, request.reset_role_passwords,
                      never_reset=frozenset({connection.user}))
    report(
        f"roles: {len(plan.created)} missing created ({', '.join(plan.created) or 'none'}), "
        f"{len(plan.left_alone)} existing left as they are"
        + (f", passwords reset for {', '.join(plan.passwords_reset)}"
           if plan.passwords_reset else "")
    )
    argv = [section.command("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
            "--dbname", connection.conninfo("postgres"), "-f", "-"]  # fmt: skip
    with client_env(connection, context) as client:
        try:
            run_program(argv, context, env=client.env, pass_fds=client.pass_fds,
                        stdin=plan.script.encode("utf-8"))
        except ProgramFailed as exc:
            raise RestoreError(f"creating the missing roles failed (none was created): {exc}"
                               ) from exc


def _swap(
    context: JobContext, connection: Connection, live: str, staging: str, previous: str,
    live_exists: bool, origin: str, report: Report,
) -> None:
    """Give the restored database the live name in one transaction, the live one aside."""
    ident = sql.Identifier
    with admin_connect(context, connection) as admin:
        if not live_exists:
            with admin.transaction():
                admin.execute(sql.SQL("alter database {} rename to {}").format(
                    ident(staging), ident(live)))
                set_mark(admin, live, None)
            report(f"{staging!r} renamed {live!r}")
            return
        report(f"swapping: {live!r} becomes {previous!r}, {staging!r} becomes {live!r}")
        # Sessions on the live database would block the rename: none may start now, and
        # those open are ended. If the swap fails, connections are allowed again.
        admin.execute(sql.SQL("alter database {} with allow_connections false").format(ident(live)))
        try:
            _end_sessions(context, admin, live)
            with admin.transaction():
                admin.execute(sql.SQL("alter database {} rename to {}").format(
                    ident(live), ident(previous)))
                admin.execute(sql.SQL("alter database {} with allow_connections true").format(
                    ident(previous)))
                admin.execute(sql.SQL("alter database {} rename to {}").format(
                    ident(staging), ident(live)))
                set_mark(admin, live, None)
                set_mark(admin, previous, f"socle-agent: the database {live} before the "
                                          f"restore of {origin}")
        except BaseException:
            _allow_again(admin, live)
            raise


def _end_sessions(context: JobContext, admin: psycopg.Connection[Any], database: str) -> None:
    while True:
        context.check(f"ending the sessions on {database}")
        row = admin.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
        if not row or row[0] == 0:
            return
        time.sleep(0.1)


def _allow_again(admin: psycopg.Connection[Any], database: str) -> None:
    try:
        if exists(admin, database):
            admin.execute(sql.SQL("alter database {} with allow_connections true").format(
                sql.Identifier(database)))
    except psycopg.Error as exc:
        log.error("could not allow connections to %s again: %s", database, exc)
