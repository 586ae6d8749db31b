"""Load and validate the agent's TOML configuration into frozen dataclasses.

Every error names the path of the key at fault, for example
`retention.keep_daily: expected an integer, got 'x'`. All errors of a file are
reported together, so one edit can fix them all.

Example:

    config = load_config(Path("/etc/socle/agent.toml"))
    config.retention.keep_daily   # 7
"""

from __future__ import annotations

import os
import shutil
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from socle_agent.schedules import Schedule, ScheduleError, parse_schedule

DEFAULT_CONFIG_PATH = Path("/etc/socle/agent.toml")
# Jobs of the agent itself; the others come from the sources (`socle_agent.sources`).
BUILTIN_JOBS = ("disk_check", "prune")
_MISSING: Any = object()


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists one message per key at fault."""

    def __init__(self, problems: list[str], source: Path | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__("\n".join(where + problem for problem in problems))


def job_names() -> tuple[str, ...]:
    """Every job a schedule may name: the sources' `<kind>_<action>`, then the built-in ones."""
    # Imported here: the sources import this module for their settings' types.
    from socle_agent.sources import job_names as source_jobs

    return (*source_jobs(), *BUILTIN_JOBS)


def backup_kinds() -> tuple[str, ...]:
    """Every kind of backup a target (RPO, RTO) may name: one per registered source that
    holds backups."""
    from socle_agent.sources import registry

    return tuple(kind for kind, source in registry().items() if source.holds_backups)


@dataclass(frozen=True)
class AgentSection:
    """Where the agent keeps its state and backups, how much it logs, how long it waits."""

    state_file: Path = Path("/var/lib/socle-agent/state.json")
    backup_dir: Path = Path("/var/backups/socle")
    log_level: str = "INFO"
    # Longest wait of one network call (a Kubernetes API request, a connection, an SMTP
    # exchange); the job's own deadline shortens it further.
    network_timeout_seconds: float = 30.0
    # A job that shows no progress for this long is stuck: the daemon reports it and
    # stops answering systemd's watchdog, which restarts the agent.
    stall_seconds: float = 900.0

    @property
    def lock_dir(self) -> Path:
        """Directory of the per-resource lock files, beside the state file."""
        return self.state_file.parent / "locks"


@dataclass(frozen=True)
class KubernetesConnection:
    """Find PostgreSQL through the cluster: a Service's address and a Secret's password."""

    service: str
    secret: str
    namespace: str = "default"
    password_key: str = "password"
    user_key: str | None = None
    port_name: str | None = None
    kubeconfig: Path | None = None


@dataclass(frozen=True)
class PostgresSection:
    """How to reach PostgreSQL and how to dump it."""

    dsn: str | None = None
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password_file: Path | None = None
    kubernetes: KubernetesConnection | None = None
    databases: tuple[str, ...] = ()
    format: str = "directory"
    compression: str = "auto"
    jobs: int = 2
    bin_dir: Path | None = None
    dump_roles: bool = True
    roles_without_passwords: bool = False
    connect_attempts: int = 3
    retry_delay_seconds: float = 10.0
    timeout_seconds: float = 6 * 3600.0
    lock_timeout_seconds: float = 600.0

    def command(self, name: str) -> str:
        """The path of a PostgreSQL client program (`pg_dump`, `pg_restore`, ...)."""
        return str(self.bin_dir / name) if self.bin_dir else name


@dataclass(frozen=True)
class K3sSection:
    """Where k3s keeps its server state and configuration."""

    server_dir: Path = Path("/var/lib/rancher/k3s/server")
    config_file: Path = Path("/etc/rancher/k3s/config.yaml")


@dataclass(frozen=True)
class RetentionPolicy:
    """How many backups to keep; a budget of bytes for the backup directory (None: none)."""

    keep_last: int = 3
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6
    max_total_bytes: int | None = None


@dataclass(frozen=True)
class DiskSection:
    """Mounts to watch and the free space a job must leave behind."""

    mounts: tuple[Path, ...] = ()
    min_free_ratio: float = 0.05
    min_free_bytes: int = 0
    growth_factor: float = 1.2


@dataclass(frozen=True)
class SqlCheck:
    """A query run against a restored database: its first value must equal `expect`.

    Without `expect` the first value must be true (e.g. `select count(*) > 0 from t`).
    """

    database: str
    sql: str
    expect: str | None = None


@dataclass(frozen=True)
class DrillSection:
    """Restore drills: recovery targets per backup kind and extra checks."""

    rto_seconds: Mapping[str, float] = field(default_factory=dict)
    rpo_seconds: Mapping[str, float] = field(default_factory=dict)
    checks: tuple[SqlCheck, ...] = ()
    scratch_prefix: str = "socle_drill_"
    restore_jobs: int = 2


@dataclass(frozen=True)
class MetricsSection:
    """The HTTP endpoint Prometheus scrapes."""

    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class MailSection:
    """SMTP delivery of state-change mails."""

    enabled: bool = False
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    from_addr: str = "socle-agent@localhost"
    to: tuple[str, ...] = ()
    secrets_file: Path | None = None
    ca_file: Path | None = None
    timeout_seconds: float = 30.0
    subject_prefix: str = "[socle]"


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    agent: AgentSection = field(default_factory=AgentSection)
    schedule: Mapping[str, Schedule] = field(default_factory=dict)
    postgres: PostgresSection | None = None
    k3s: K3sSection = field(default_factory=K3sSection)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    disk: DiskSection = field(default_factory=DiskSection)
    drill: DrillSection = field(default_factory=DrillSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    mail: MailSection = field(default_factory=MailSection)
    # Settings of sources that bring their own table (see `Source.section`), by kind.
    sources: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None


class Table:
    """One TOML table being read: typed getters that record problems by key path.

    Every getter names the key and its default, so the parser itself is the one
    description of the configuration: `describe_keys` reads it back from here.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        path: str,
        problems: list[str],
        known: dict[str, Any] | None = None,
    ) -> None:
        self.data = data
        self.prefix = path
        self.problems = problems
        self.seen: set[str] = set()
        # key path -> default (_MISSING: required), filled as keys are read
        self.known = known if known is not None else {}

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def problem(self, name: str, message: str) -> None:
        self.problems.append(f"{self.key(name)}: {message}")

    def raw(self, name: str, default: Any) -> Any:
        self.seen.add(name)
        self.known.setdefault(self.key(name), default)
        if name in self.data:
            return self.data[name]
        if default is _MISSING:
            self.problem(name, "required key is missing")
        return default

    def _typed(self, name: str, default: Any, kinds: tuple[type, ...], label: str) -> Any:
        value = self.raw(name, default)
        if value is default:
            return value
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            self.problem(name, f"expected {label}, got {value!r}")
            return default
        return value

    def string(self, name: str, default: Any = _MISSING, choices: tuple[str, ...] = ()) -> Any:
        value = self._typed(name, default, (str,), "a string")
        if choices and isinstance(value, str) and value not in choices:
            self.problem(name, f"expected one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def integer(self, name: str, default: Any = _MISSING, minimum: int | None = 0) -> Any:
        value = self._typed(name, default, (int,), "an integer")
        if isinstance(value, int) and minimum is not None and value < minimum:
            self.problem(name, f"expected an integer of at least {minimum}, got {value!r}")
            return default
        return value

    def number(self, name: str, default: Any = _MISSING, maximum: float | None = None) -> Any:
        value = self._typed(name, default, (int, float), "a number")
        if isinstance(value, int | float) and value is not default:
            if value < 0 or (maximum is not None and value > maximum):
                bound = f"between 0 and {maximum}" if maximum is not None else "0 or more"
                self.problem(name, f"expected a number {bound}, got {value!r}")
                return default
            return float(value)
        return value

    def duration(self, name: str, default: Any = _MISSING) -> Any:
        """A number of seconds above zero (0 would mean "wait forever" to many libraries)."""
        value = self.number(name, default)
        if isinstance(value, float) and value <= 0:
            self.problem(name, f"expected a number of seconds above 0, got {value!r}")
            return default
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        return self._typed(name, default, (bool,), "true or false")

    def path(self, name: str, default: Any = _MISSING) -> Any:
        value = self.string(name, default)
        if isinstance(value, str):
            if not value:
                self.problem(name, "expected a path, got an empty string")
                return default
            return Path(value)
        return value

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name, default)
        if value is default:
            return default
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(name, f"expected a list of strings, got {value!r}")
            return default
        return tuple(value)

    def table(self, name: str) -> Table | None:
        value = self.raw(name, None)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(name, f"expected a table, got {value!r}")
            return None
        return Table(value, self.key(name), self.problems, self.known)

    def finish(self) -> None:
        for name in sorted(set(self.data) - self.seen):
            self.problem(name, "unknown key")


def load_config(path: Path = DEFAULT_CONFIG_PATH, check_paths: bool = True) -> Config:
    """Read and validate the configuration file at `path`.

    With `check_paths`, files and programs named by the configuration must exist and be
    usable on this machine. Raises ConfigError naming every key at fault.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the configuration: {exc.strerror}"], path) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path) from exc
    return parse_config(data, source=path, check_paths=check_paths)


def parse_config(
    data: Mapping[str, Any], source: Path | None = None, check_paths: bool = True
) -> Config:
    """Validate already parsed TOML `data` into a Config (see `load_config`)."""
    problems: list[str] = []
    config = _read(Table(data, "", problems))
    config = replace(config, source=source)
    _cross_checks(config, problems)
    if check_paths and not problems:
        _check_paths(config, problems)
    if problems:
        raise ConfigError(problems, source)
    return config


def _read(root: Table) -> Config:
    from socle_agent.sources import registry

    own_tables = {s.section: s for s in registry().values() if s.section}
    config = Config(
        agent=_agent(root.table("agent")),
        schedule=_schedule(root.table("schedule")),
        postgres=_postgres(root.table("postgres")),
        k3s=_k3s(root.table("k3s")),
        retention=_retention(root.table("retention")),
        disk=_disk(root.table("disk")),
        drill=_drill(root.table("drill")),
        metrics=_metrics(root.table("metrics")),
        mail=_mail(root.table("mail")),
        sources={
            source.kind: source.parse_section(table)
            for name, source in sorted(own_tables.items())
            if (table := root.table(name)) is not None
        },
    )
    root.finish()
    return config


def describe_keys() -> dict[str, Any]:
    """Every key the parser reads, by path, with its default (`REQUIRED` if it has none).

    Read from the parser itself, given every table, so it cannot drift from it; the
    sample configuration is tested against it.

    >>> describe_keys()["retention.keep_daily"]
    7
    """
    from socle_agent.sources import registry

    tables: dict[str, Any] = {
        name: {} for name in ("agent", "schedule", "k3s", "retention", "disk", "metrics")
    }
    tables["postgres"] = {"kubernetes": {}}
    tables["drill"] = {"checks": [{}], "rto_seconds": {}, "rpo_seconds": {}}
    tables["mail"] = {}
    for source in registry().values():
        if source.section:
            tables[source.section] = {}
    known: dict[str, Any] = {}
    _read(Table(tables, "", [], known))
    return {key: REQUIRED if value is _MISSING else value for key, value in known.items()}


REQUIRED: Any = "<required>"


def _agent(table: Table | None) -> AgentSection:
    if table is None:
        return AgentSection()
    default = AgentSection()
    section = AgentSection(
        state_file=table.path("state_file", default.state_file),
        backup_dir=table.path("backup_dir", default.backup_dir),
        log_level=table.string(
            "log_level", default.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")
        ),
        network_timeout_seconds=table.duration(
            "network_timeout_seconds", default.network_timeout_seconds
        ),
        stall_seconds=table.duration("stall_seconds", default.stall_seconds),
    )
    table.finish()
    return section


def _schedule(table: Table | None) -> dict[str, Schedule]:
    if table is None:
        return {}
    schedules: dict[str, Schedule] = {}
    known = job_names()
    for job in table.data:
        phrase = table.string(job, None)
        if job not in known:
            table.problem(job, f"unknown job; known jobs are {', '.join(known)}")
            continue
        if phrase is None:
            continue
        try:
            schedules[job] = parse_schedule(phrase)
        except ScheduleError as exc:
            table.problem(job, str(exc))
    return schedules


def _postgres(table: Table | None) -> PostgresSection | None:
    if table is None:
        return None
    default = PostgresSection()
    kube = table.table("kubernetes")
    kubernetes = None
    if kube is not None:
        kubernetes = KubernetesConnection(
            service=kube.string("service"),
            secret=kube.string("secret"),
            namespace=kube.string("namespace", "default"),
            password_key=kube.string("password_key", "password"),
            user_key=kube.string("user_key", None),
            port_name=kube.string("port_name", None),
            kubeconfig=kube.path("kubeconfig", None),
        )
        kube.finish()
    section = PostgresSection(
        dsn=table.string("dsn", None),
        host=table.string("host", default.host),
        port=table.integer("port", default.port, minimum=1),
        user=table.string("user", default.user),
        password_file=table.path("password_file", None),
        kubernetes=kubernetes,
        databases=table.strings("databases"),
        format=table.string("format", default.format, ("custom", "directory")),
        compression=_compression(table, default.compression),
        jobs=table.integer("jobs", default.jobs, minimum=1),
        bin_dir=table.path("bin_dir", None),
        dump_roles=table.boolean("dump_roles", default.dump_roles),
        roles_without_passwords=table.boolean(
            "roles_without_passwords", default.roles_without_passwords
        ),
        connect_attempts=table.integer("connect_attempts", default.connect_attempts, minimum=1),
        retry_delay_seconds=table.number("retry_delay_seconds", default.retry_delay_seconds),
        timeout_seconds=table.duration("timeout_seconds", default.timeout_seconds),
        lock_timeout_seconds=table.duration("lock_timeout_seconds", default.lock_timeout_seconds),
    )
    if section.dsn and _dsn_password(section.dsn, table):
        table.problem(
            "dsn",
            "holds a password, which would show in the process list of every local user; "
            "put it in postgres.password_file",
        )
    if section.dsn and section.kubernetes:
        table.problem("kubernetes", "give either postgres.dsn or [postgres.kubernetes], not both")
    table.finish()
    return section


# Methods pg_dump knows, with the levels each accepts; which of them the installed
# pg_dump supports is told when a dump starts (see socle_agent.postgres.compression).
COMPRESSION_LEVELS = {"gzip": (1, 9), "lz4": (1, 12), "zstd": (1, 22)}


def _compression(table: Table, default: str) -> str:
    """"auto", "none", or METHOD[:LEVEL] (an integer alone is a gzip level, 0 is none)."""
    value = table.raw("compression", default)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return "none" if value == 0 else f"gzip:{value}"
    if isinstance(value, str):
        method, _, level = value.partition(":")
        if value in ("auto", "none") or (method in COMPRESSION_LEVELS and not level):
            return value
        low, high = COMPRESSION_LEVELS.get(method, (0, -1))
        if level.isdigit() and low <= int(level) <= high:
            return value
    table.problem(
        "compression",
        f'expected "auto", "none", gzip, lz4 or zstd with an optional ":LEVEL", '
        f"or a gzip level from 0 to 9, got {value!r}",
    )
    return default


def _dsn_password(dsn: str, table: Table) -> bool:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        return "password" in conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        table.problem("dsn", f"not a valid libpq connection string: {exc}")
        return False


def _k3s(table: Table | None) -> K3sSection:
    if table is None:
        return K3sSection()
    default = K3sSection()
    section = K3sSection(
        server_dir=table.path("server_dir", default.server_dir),
        config_file=table.path("config_file", default.config_file),
    )
    table.finish()
    return section


def _retention(table: Table | None) -> RetentionPolicy:
    if table is None:
        return RetentionPolicy()
    default = RetentionPolicy()
    policy = RetentionPolicy(
        keep_last=table.integer("keep_last", default.keep_last),
        keep_daily=table.integer("keep_daily", default.keep_daily),
        keep_weekly=table.integer("keep_weekly", default.keep_weekly),
        keep_monthly=table.integer("keep_monthly", default.keep_monthly),
        max_total_bytes=table.integer("max_total_bytes", None, minimum=1),
    )
    table.finish()
    return policy


def _disk(table: Table | None) -> DiskSection:
    if table is None:
        return DiskSection()
    default = DiskSection()
    section = DiskSection(
        mounts=tuple(Path(mount) for mount in table.strings("mounts")),
        min_free_ratio=table.number("min_free_ratio", default.min_free_ratio, maximum=1.0),
        min_free_bytes=table.integer("min_free_bytes", default.min_free_bytes),
        growth_factor=table.number("growth_factor", default.growth_factor),
    )
    table.finish()
    return section


def kind_targets(table: Table | None) -> dict[str, float]:
    """A table of seconds per kind of backup (RPO or RTO targets), kinds checked."""
    if table is None:
        return {}
    targets = {}
    kinds = backup_kinds()
    for kind in table.data:
        value = table.duration(kind, None)
        if kind not in kinds:
            table.problem(kind, f"unknown backup kind; expected one of {', '.join(kinds)}")
        elif value is not None:
            targets[kind] = value
    return targets


def _drill(table: Table | None) -> DrillSection:
    if table is None:
        return DrillSection()
    default = DrillSection()
    checks = []
    raw_checks = table.raw("checks", [])
    if not isinstance(raw_checks, list):
        table.problem("checks", f"expected a list of tables ([[drill.checks]]), got {raw_checks!r}")
        raw_checks = []
    for index, raw in enumerate(raw_checks):
        if not isinstance(raw, dict):
            table.problem(f"checks[{index}]", f"expected a table, got {raw!r}")
            continue
        check = Table(raw, table.key(f"checks[{index}]"), table.problems, table.known)
        expect = check.raw("expect", None)
        checks.append(
            SqlCheck(
                database=check.string("database"),
                sql=check.string("sql"),
                expect=None if expect is None else str(expect),
            )
        )
        check.finish()
    section = DrillSection(
        rto_seconds=kind_targets(table.table("rto_seconds")),
        rpo_seconds=kind_targets(table.table("rpo_seconds")),
        checks=tuple(checks),
        scratch_prefix=table.string("scratch_prefix", default.scratch_prefix),
        restore_jobs=table.integer("restore_jobs", default.restore_jobs, minimum=1),
    )
    if not section.scratch_prefix:
        # An empty prefix would make the scratch database the live one, which a drill drops.
        table.problem("scratch_prefix", "must not be empty")
    table.finish()
    return section


def _metrics(table: Table | None) -> MetricsSection:
    if table is None:
        return MetricsSection()
    default = MetricsSection()
    section = MetricsSection(
        enabled=table.boolean("enabled", default.enabled),
        listen=table.string("listen", default.listen),
        port=table.integer("port", default.port, minimum=1),
    )
    if section.port > 65535:
        table.problem("port", f"expected a TCP port (1 to 65535), got {section.port}")
    table.finish()
    return section


def _mail(table: Table | None) -> MailSection:
    if table is None:
        return MailSection()
    default = MailSection()
    section = MailSection(
        enabled=table.boolean("enabled", True),
        host=table.string("host"),
        port=table.integer("port", default.port, minimum=1),
        security=table.string("security", default.security, ("starttls", "tls", "none")),
        from_addr=table.string("from"),
        to=table.strings("to"),
        secrets_file=table.path("secrets_file", None),
        ca_file=table.path("ca_file", None),
        timeout_seconds=table.duration("timeout_seconds", default.timeout_seconds),
        subject_prefix=table.string("subject_prefix", default.subject_prefix),
    )
    if section.enabled and not section.to:
        table.problem("to", "at least one recipient is needed when mail is enabled")
    if section.secrets_file is not None and section.security == "none":
        table.problem(
            "secrets_file",
            'a login over an unencrypted connection (mail.security = "none") would send the '
            'password in clear; use "starttls" or "tls"',
        )
    table.finish()
    return section


def _cross_checks(config: Config, problems: list[str]) -> None:
    """Checks that involve more than one section."""
    from socle_agent.sources import registry

    for kind, source in registry().items():
        for action in source.actions():
            job = f"{kind}_{action}"
            if job in config.schedule and not source.configured(config):
                section = source.section or kind
                problems.append(f"schedule.{job}: scheduled, but there is no [{section}] section")
    if config.agent.stall_seconds <= config.agent.network_timeout_seconds:
        problems.append(
            f"agent.stall_seconds: {config.agent.stall_seconds:g} must be longer than "
            f"agent.network_timeout_seconds ({config.agent.network_timeout_seconds:g}), or one "
            "slow call would count as a stuck job"
        )
    backed_up = config.postgres.databases if config.postgres else ()
    for index, check in enumerate(config.drill.checks):
        if config.postgres is None:
            problems.append(f"drill.checks[{index}]: there is no [postgres] section to drill")
        elif backed_up and check.database not in backed_up:
            problems.append(
                f"drill.checks[{index}].database: {check.database!r} is not backed up "
                f"(postgres.databases = {list(backed_up)})"
            )


def _check_paths(config: Config, problems: list[str]) -> None:
    """Files, directories and programs named by the configuration exist and are usable."""
    _creatable_dir(config.agent.backup_dir, "agent.backup_dir", problems)
    _creatable_dir(config.agent.state_file.parent, "agent.state_file", problems)
    if config.postgres is not None:
        pg = config.postgres
        if pg.password_file is not None:
            _private_file(pg.password_file, "postgres.password_file", problems)
        if pg.kubernetes and pg.kubernetes.kubeconfig and pg.kubernetes.kubeconfig.exists():
            # A missing kubeconfig is no reason not to start: on a first deploy the cluster
            # comes later, and the PostgreSQL jobs report it as their failure until then.
            _kubeconfig(pg.kubernetes.kubeconfig, "postgres.kubernetes.kubeconfig", problems)
        programs = ["pg_dump", "pg_restore", "psql"] + (["pg_dumpall"] if pg.dump_roles else [])
        for program in programs:
            if shutil.which(pg.command(program)) is None:
                key = "postgres.bin_dir" if pg.bin_dir else "postgres"
                problems.append(f"{key}: program {pg.command(program)!r} not found")
                break
    for index, mount in enumerate(config.disk.mounts):
        if not mount.is_dir():
            problems.append(f"disk.mounts[{index}]: {str(mount)!r} is not a directory")
    if config.mail.enabled:
        if config.mail.secrets_file is not None:
            _private_file(config.mail.secrets_file, "mail.secrets_file", problems)
        if config.mail.ca_file is not None:
            _readable_file(config.mail.ca_file, "mail.ca_file", problems)


def _creatable_dir(path: Path, key: str, problems: list[str]) -> None:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problems.append(f"{key}: {str(existing)!r} is not a directory")
    elif not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"{key}: {str(existing)!r} is not writable")


def _readable_file(path: Path, key: str, problems: list[str]) -> bool:
    if not path.is_file():
        problems.append(f"{key}: {str(path)!r} does not exist or is not a file")
        return False
    if not os.access(path, os.R_OK):
        problems.append(f"{key}: {str(path)!r} is not readable")
        return False
    return True


def _kubeconfig(path: Path, key: str, problems: list[str]) -> None:
    if not _readable_file(path, key, problems):
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and "token" in path.read_text(encoding="utf-8", errors="replace"):
        problems.append(
            f"{key}: {str(path)!r} holds a token but others may read it (mode {mode:04o}); "
            "make it 0600"
        )


def _private_file(path: Path, key: str, problems: list[str]) -> None:
    # Secrets readable by others would leak; refuse them like libpq refuses a loose .pgpass.
    if _readable_file(path, key, problems):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(
                f"{key}: {str(path)!r} must be readable by its owner only (mode {mode:04o})"
            )
