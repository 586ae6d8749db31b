"""The `postgres` source: dumps, drills and safe restores of PostgreSQL databases.

The work is done in `socle_agent.postgres` (one module per job); this module plugs it
into the agent: jobs `postgres_backup` and `postgres_drill` (`socle-agent backup
postgres`, `drill postgres`, each with `--database`) and `socle-agent restore postgres`.
"""

from __future__ import annotations

import argparse

from socle_agent.base import JobContext, RestoreRefused
from socle_agent.config import Config
from socle_agent.postgres.connection import resolve_connection
from socle_agent.postgres.drill import drill_job
from socle_agent.postgres.dump import KIND, backup_job
from socle_agent.postgres.restore import RestoreRequest, restore_backup
from socle_agent.source import DEFAULT_JOB_TIMEOUT, Action, Report, Source


def _database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", metavar="NAME", help="only this database")


def _timeout(config: Config) -> float:
    return config.postgres.timeout_seconds if config.postgres else DEFAULT_JOB_TIMEOUT


class PostgresSource(Source):
    """PostgreSQL databases, dumped with pg_dump."""

    kind = KIND
    subject_label = "database"

    def actions(self) -> dict[str, Action]:
        """backup (pg_dump of each database) and drill (restore into a scratch database)."""
        return {
            "backup": Action(backup_job, "dump the databases", _database_argument, _timeout),
            "drill": Action(drill_job, "restore the newest dumps into scratch databases "
                            "and check them", _database_argument, _timeout),
        }

    def configured(self, config: Config) -> bool:
        """A [postgres] section is needed."""
        return config.postgres is not None

    def expected_subjects(self, config: Config) -> tuple[str, ...]:
        """The databases listed in the configuration (none when it backs up every one)."""
        return config.postgres.databases if config.postgres else ()

    def add_restore_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Options of `socle-agent restore postgres`."""
        parser.add_argument("--backup", required=True, metavar="ID", help="backup id (see `list`)")
        parser.add_argument("--database", required=True, metavar="NAME",
                            help="the database to restore into")
        parser.add_argument(
            "--replace", "--drop-existing", dest="replace", action="store_true",
            help="if the database exists, swap the restored copy in once it is checked",
        )
        parser.add_argument(
            "--keep-previous", action=argparse.BooleanOptionalAction, default=True,
            help="keep the replaced database as <name>_before_<time> (default: keep it)",
        )
        parser.add_argument(
            "--with-roles", action="store_true",
            help="create the backup's roles and tablespaces that are missing on the server "
                 "(existing roles are left as they are)",
        )
        parser.add_argument(
            "--reset-role-passwords", action="store_true",
            help="also give existing roles their password of backup time",
        )
        parser.add_argument("--jobs", type=int, default=2, help="pg_restore -j (default 2)")

    def restore(self, context: JobContext, args: argparse.Namespace, report: Report) -> str:
        """Restore beside the live database, check, then swap (see postgres.restore)."""
        section = context.config.postgres
        if section is None:
            raise RestoreRefused("there is no [postgres] section in the configuration")
        request = RestoreRequest(
            backup_id=args.backup,
            database=args.database,
            replace=args.replace,
            keep_previous=args.keep_previous,
            with_roles=args.with_roles,
            reset_role_passwords=args.reset_role_passwords,
            jobs=args.jobs,
        )
        return restore_backup(context, resolve_connection(context, section), request, report)


SOURCE = PostgresSource()
