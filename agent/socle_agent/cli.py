"""The `socle-agent` command line: every job by hand, the daemon, and the catalogue.

Examples:

    socle-agent check-config
    socle-agent backup postgres --database app
    socle-agent snapshot k3s
    socle-agent drill k3s
    socle-agent list --kind postgres
    socle-agent list --offsite        # what is off-site beside what is local
    socle-agent restore postgres --from offsite --backup app-20261126T023000Z --database app
    socle-agent prune --dry-run
    socle-agent run          # the daemon, as systemd starts it

Exit codes: 0 done, 1 the job or restore failed (a restore leaves what was live as it
was), 2 the configuration is wrong, 3 a restore was refused before anything changed
(damaged backup, the target exists, k3s runs), 4 no such backup, 75 another job holds
the resource (try again later).

The verbs for backups come from the registered sources (`socle_agent.sources`): a
source's action becomes `socle-agent <action> <kind>` with the options it declares, and
a source that keeps copies elsewhere (an origin, such as `offsite`) adds `list --<kind>`
and `restore ... --from <kind>`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from socle_agent import __version__, catalogue
from socle_agent.base import (
    EXIT_BUSY,
    EXIT_CONFIG,
    EXIT_FAILED,
    AgentError,
    JobContext,
    held,
)
from socle_agent.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    backup_kinds,
    load_config,
)
from socle_agent.jobs import run_job
from socle_agent.logs import setup_logging
from socle_agent.mail import Mailer, MailError
from socle_agent.pruning import prune_kind
from socle_agent.source import Source
from socle_agent.sources import registry as source_registry
from socle_agent.state import load_state

# Options of the command line itself; every other option of a job's subcommand is the
# job's own and reaches it in `context.options`.
_OWN_OPTIONS = frozenset({"config", "log_level", "command", "func", "check_paths", "kind",
                          "action"})
LOCAL = "local"
HOST_NAME = re.compile(r"^[A-Za-z0-9._-]{1,253}$")


def _time(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return dt.datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _size(count: float | None) -> str:
    if count is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    """Validate the configuration and print the verdict."""
    print(f"{config.source}: configuration OK")
    return 0


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM."""
    from socle_agent.daemon import Daemon

    return Daemon(config).run()


def cmd_job(config: Config, args: argparse.Namespace) -> int:
    """Run one job now (backup postgres, snapshot k3s, drill ...), as the daemon would."""
    job = f"{args.kind}_{args.action}"
    options = {key: value for key, value in vars(args).items() if key not in _OWN_OPTIONS}
    result = run_job(job, config, options=options)
    if result.status == "ok":
        summary = result.outcome.summary if result.outcome else ""
        print(f"{job}: ok in {result.duration:.1f} s" + (f": {summary}" if summary else ""))
        return 0
    print(f"{job}: {result.status}: {result.error}", file=sys.stderr)
    return EXIT_BUSY if result.status == "busy" else EXIT_FAILED


def cmd_list(config: Config, args: argparse.Namespace) -> int:
    """List the complete backups, oldest first (with --offsite, those off-site too; ``--json``:
    one object per backup, for programs)."""
    backups = catalogue.list_backups(config.agent.backup_dir, args.kind)
    folders = {(b.manifest.kind, b.manifest.id): b.path.name for b in backups}
    # (kind, id) -> (subject, finished, size, where it is)
    rows: dict[tuple[str, str], tuple[str, float, int | None, list[str]]] = {
        (b.manifest.kind, b.manifest.id): (b.manifest.subject, b.manifest.finished,
                                           b.manifest.size_bytes, [LOCAL])
        for b in backups
    }
    origins = [s for s in source_registry().values() if s.is_origin and getattr(
        args, f"origin_{s.kind}", False)]
    for origin in origins:
        for copy in origin.copies(_origin_context(config, args), args.kind):
            _, _, size, where = rows.setdefault(
                (copy.kind, copy.backup_id), (copy.subject, copy.finished, None, []))
            where.append(origin.kind)
    ordered = sorted(rows.items(), key=lambda item: (item[1][1], item[0][1]))
    if args.json:
        print(json.dumps([
            {"id": backup_id, "kind": kind, "subject": subject, "finished": finished,
             "size_bytes": size, "folder": folders.get((kind, backup_id)), "where": where}
            for (kind, backup_id), (subject, finished, size, where) in ordered
        ], indent=1))  # fmt: skip
        return 0
    if not rows:
        print("no backups")
        return 0
    header = f"{'ID':<40} {'KIND':<9} {'SUBJECT':<16} {'FINISHED':<24} {'SIZE':<10}"
    print(header + (" WHERE" if origins else "").rstrip())
    for (kind, backup_id), (subject, finished, size, where) in ordered:
        # a database's name comes from the server: never print control characters as such
        shown = subject if subject.isprintable() else repr(subject)
        line = f"{backup_id:<40} {kind:<9} {shown:<16} {_time(finished):<24} {_size(size):<10}"
        print((line + (" " + "+".join(where) if origins else "")).rstrip())
    return 0


def cmd_prune(config: Config, args: argparse.Namespace) -> int:
    """Apply the retention policy now (or show what it would delete)."""
    if not args.dry_run:
        result = run_job("prune", config)
        if result.status != "ok":
            print(f"prune: {result.status}: {result.error}", file=sys.stderr)
            return EXIT_BUSY if result.status == "busy" else EXIT_FAILED
        print(f"prune: {result.outcome.summary if result.outcome else 'done'}")
        return 0
    for kind in backup_kinds():
        for backup in prune_kind(config, kind, dry_run=True):
            print(f"would delete {kind}/{backup.manifest.id}")
    return 0


def cmd_notify_test(config: Config, args: argparse.Namespace) -> int:
    """Send a test mail to the configured recipients."""
    mailer = Mailer(config.mail)
    if not mailer.enabled:
        print("mail is not enabled in the configuration", file=sys.stderr)
        return EXIT_CONFIG
    try:
        mailer.send("test mail", "This is a test mail from socle-agent; delivery works.\n")
    except MailError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    print(f"test mail sent to {', '.join(config.mail.to)}")
    return 0


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    """Print the last result of each job, drill and backup kind."""
    try:
        state = load_state(config.agent.state_file)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    jobs = state.get("jobs", {})
    for job in sorted(set(jobs) | set(config.schedule)):
        record = jobs.get(job, {})
        line = (
            f"{job:<16} {record.get('status', 'never run'):<9} "
            f"last run {_time(record.get('last_run'))}, "
            f"last success {_time(record.get('last_success'))}"
        )
        if record.get("status") == "failed":
            line += f"\n{'':<17}error: {record.get('error', '')}"
        print(line)
    for kind, drill in sorted(state.get("drills", {}).items()):
        print(f"drill {kind:<10} {drill['result']:<9} {drill.get('duration', 0):.1f} s "
              f"{drill.get('reason', '')}".rstrip())
    for kind, backups in sorted(state.get("backups", {}).items()):
        print(f"backups {kind:<8} {backups.get('retained', 0)} kept, newest "
              f"{_time(backups.get('newest_end'))}, {_size(backups.get('total_bytes'))}")
    return 0


def restore_command(source: Source) -> Callable[[Config, argparse.Namespace], int]:
    """`socle-agent restore <kind>`: the source's restore under its lock, errors to exit
    codes; with `--from <origin>`, of a backup fetched from there first."""

    def command(config: Config, args: argparse.Namespace) -> int:
        def report(line: str) -> None:
            print(line, flush=True)

        origin = getattr(args, "origin", LOCAL)
        with held(config.agent.lock_dir, source.resources):
            if origin == LOCAL:
                summary = source.restore(JobContext(config), args, report)
            else:
                summary = restore_from(source_registry()[origin], source, config, args, report)
        print(summary)
        return 0

    command.__doc__ = f"restore a {source.kind} backup"
    return command


def _origin_context(config: Config, args: argparse.Namespace) -> JobContext:
    """A job context for reading an origin; `--origin-host` names whose copies to read."""
    host = getattr(args, "origin_host", None)
    return JobContext(config, options={"origin_host": host} if host else {})


def _host_name(value: str) -> str:
    """An inventory's host name, as the copies off-site carry it."""
    if not HOST_NAME.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a plain host name")
    return value


def _add_origin_host(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--origin-host", type=_host_name, metavar="NAME",
        help="the copies host NAME sent (its inventory name), not this host's: after a "
             "rebuild under another name, or in a recovery rehearsal")  # fmt: skip


def restore_from(origin: Source, source: Source, config: Config, args: argparse.Namespace,
                 report: Callable[[str], None]) -> str:
    """Fetch the backup from `origin` into a scratch catalogue, then restore it from there
    exactly as a local one (the source checks it again before it touches anything)."""
    backup_id = source.restore_backup_id(args)
    with origin.fetched(_origin_context(config, args), source.kind, backup_id,
                        report) as folder:
        fetched = replace(config, agent=replace(config.agent, backup_dir=folder))
        return source.restore(JobContext(fetched), args, report)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with a subcommand per job that the registered sources provide."""
    parser = argparse.ArgumentParser(prog="socle-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"socle-agent {__version__}")
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="default: %(default)s"
    )
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        func: Callable[[Config, argparse.Namespace], int],
        check: bool = True,
        text: str = "",
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text or (func.__doc__ or "").splitlines()[0])
        sub.set_defaults(func=func, check_paths=check)
        return sub

    add("check-config", cmd_check_config)
    add("run", cmd_run)
    sources = source_registry()
    by_action: dict[str, list[Source]] = {}
    for source in sources.values():
        for action in source.actions():
            by_action.setdefault(action, []).append(source)
    for action, providers in by_action.items():
        kinds = ", ".join(s.kind for s in providers)
        sub = add(action, cmd_job, text=f"{action} now, as the daemon would ({kinds})")
        per_kind = sub.add_subparsers(dest="kind", required=True, metavar="KIND")
        for source in providers:
            spec = source.actions()[action]
            kind_parser = per_kind.add_parser(source.kind, help=spec.help)
            kind_parser.set_defaults(action=action)
            if spec.add_arguments is not None:
                spec.add_arguments(kind_parser)
    origins = [s.kind for s in sources.values() if s.is_origin]
    restore = commands.add_parser("restore", help="restore a backup")
    restore_kinds = restore.add_subparsers(dest="kind", required=True, metavar="KIND")
    for source in sources.values():
        if source.can_restore:
            kind_parser = restore_kinds.add_parser(source.kind, help=f"restore a {source.kind} "
                                                   "backup")
            source.add_restore_arguments(kind_parser)
            if origins and source.holds_backups:
                kind_parser.add_argument(
                    "--from", dest="origin", choices=(LOCAL, *origins), default=LOCAL,
                    help="where the backup is: the local catalogue (default), or fetched "
                         "from there first and checked against its manifest")
                _add_origin_host(kind_parser)
            kind_parser.set_defaults(func=restore_command(source), check_paths=True)
    list_parser = add("list", cmd_list, check=False)
    list_parser.add_argument("--kind", choices=tuple(k for k, s in sources.items()
                                                     if s.holds_backups))
    list_parser.add_argument("--json", action="store_true", help="print JSON, for programs")
    for origin in origins:
        list_parser.add_argument(f"--{origin}", dest=f"origin_{origin}", action="store_true",
                                 help=f"also what {origin} keeps, beside what is local")
    if origins:
        _add_origin_host(list_parser)
    prune = add("prune", cmd_prune, check=False)
    prune.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    add("notify-test", cmd_notify_test)
    add("status", cmd_status, check=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `socle-agent` command line and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, check_paths=args.check_paths)
    except ConfigError as exc:
        print("socle-agent: the configuration is not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {exc.source}: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(args.log_level or config.agent.log_level)
    try:
        result: int = args.func(config, args)
    except AgentError as exc:
        print(f"socle-agent: {exc}", file=sys.stderr)
        return exc.exit_code
    return result


if __name__ == "__main__":
    sys.exit(main())
