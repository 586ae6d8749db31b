"""pg_restore of a backup's dump into an existing, empty database, in parallel.

Used by the drill (into a scratch database) and the restore (into a staging database
swapped in afterwards). Directory and custom dumps both restore with `--jobs`.

Example:

    restore_dump(context, connection, backup, "socle_drill_app", jobs=2)
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from socle_agent import catalogue
from socle_agent.base import JobContext
from socle_agent.postgres.connection import Connection, client_env
from socle_agent.programs import ProgramFailed, run_program

# Serial steps say "processing item N WHAT", parallel ones "finished item N WHAT". The
# workers and the leader share stderr and write a line in pieces, so a line can carry a
# piece of another ("pg_restore: pg_restore: finished item ..."): search, don't anchor.
_ITEM_DONE = re.compile(r"(?:processing|finished) item \d+ (.+?)(?:pg_restore: .*)?$")
_CHATTER = ("launching item", "creating", "processing data", "executing", "connecting")


class RestoreProgramFailed(ProgramFailed):
    """pg_restore failed; the message holds what it said."""


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

    Without `keep_owners` objects belong to the connecting user and grants are left out
    (a drill's scratch copy). `progress` receives a line per restored item
    ("[12/40] TABLE DATA public orders").
    """
    section = context.config.postgres
    assert section is not None
    dump = backup.path / "dump"
    pg_restore = section.command("pg_restore")
    argv = [pg_restore, "--exit-on-error", f"--jobs={jobs}", "--dbname",
            connection.conninfo(database)]  # fmt: skip
    if not keep_owners:
        argv += ["--no-owner", "--no-acl"]
    with client_env(connection, context) as client:
        on_line = None
        if progress is not None:
            total = _count_items(context, pg_restore, dump, client.env)
            on_line = _item_reporter(progress, total)
            argv.append("--verbose")
        try:
            run_program([*argv, str(dump)], context, env=client.env, pass_fds=client.pass_fds,
                        on_line=on_line)
        except ProgramFailed as exc:
            raise RestoreProgramFailed(str(exc)) from exc


def _count_items(context: JobContext, pg_restore: str, dump: Path, env: dict[str, str]) -> int:
    """Items in the dump's table of contents (reading it needs no server)."""
    done = subprocess.run([pg_restore, "--list", str(dump)], capture_output=True, text=True,
                          env=env, timeout=context.timeout(300), check=False)
    return sum(1 for line in done.stdout.splitlines() if line[:1].isdigit())


def _item_reporter(progress: Callable[[str], None], total: int) -> Callable[[str], None]:
    done = 0

    def on_line(line: str) -> None:
        nonlocal done
        text = line.removeprefix("pg_restore: ")
        item = _ITEM_DONE.search(text)
        if item:
            done += 1
            # the table of contents leaves out a few entries pg_restore reports
            progress(f"[{done}/{max(done, total)}] {item.group(1)}")

    return on_line
