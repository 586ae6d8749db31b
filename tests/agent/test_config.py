"""Loading and validating the configuration."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from socle_agent.config import (
    REQUIRED,
    ConfigError,
    SqlCheck,
    describe_keys,
    load_config,
    parse_config,
)
from socle_agent.schedules import Schedule

EXAMPLE = Path(__file__).parents[2] / "agent" / "agent.example.toml"


def problems_of(data: dict, check_paths: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, check_paths=check_paths)
    return caught.value.problems


_KEY_LINE = re.compile(r"^(#\s*)?([a-z_]+)\s*=\s*(.+)$")
_SECTION = re.compile(r"^(?:#\s*)?\[\[?([a-z0-9_.]+)\]\]?\s*$")


def example_keys() -> dict[str, tuple[object, bool, str]]:
    """Keys of the sample: path -> (value shown, commented out, marker ("example", ...))."""
    keys: dict[str, tuple[object, bool, str]] = {}
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        if header := _SECTION.match(line):
            section = header.group(1)
            continue
        if not (found := _KEY_LINE.match(line)):
            continue
        commented, key, rest = found.groups()
        value_text, _, comment = rest.partition("  #")
        if value_text.lstrip().startswith(('"', "[", "{")) or value_text[:1].isdigit() or (
                value_text in ("true", "false")):
            value = tomllib.loads(f"v = {value_text}")["v"]
        else:
            continue  # prose that happens to hold an equals sign
        marker = comment.strip().split(",")[0].split(":")[0].strip()
        keys[f"{section}.{key}" if section else key] = (value, bool(commented), marker)
    return keys


def shown(default: object) -> object:
    if isinstance(default, Path):
        return str(default)
    if isinstance(default, tuple):
        return list(default)
    return default


def test_example_shows_every_key_the_parser_reads_with_its_default() -> None:
    known = {re.sub(r"\[\d+\]", "", key): value for key, value in describe_keys().items()}
    tables = {k for k in known if any(o.startswith(f"{k}.") for o in known)} | {"schedule"}
    example = example_keys()
    values = {k: v for k, v in known.items() if k not in tables}

    assert sorted(set(values) - set(example)) == [], "keys the sample does not show"
    unknown = [k for k in example if k not in values and not k.startswith("schedule.")]
    assert unknown == [], "keys the parser does not read"
    for key, (value, commented, marker) in example.items():
        if key.startswith("schedule."):
            continue
        default = values[key]
        if default is REQUIRED:
            assert marker == "required", f"{key} has no default: mark it # required"
        elif marker in ("example", "required", "unset"):
            # mail.to has an empty default but is needed once [mail] is there
            assert marker != "required" or key == "mail.to", f"{key} has a default"
        elif commented and default is None:
            pass  # unset until given; the line shows a value to give
        else:
            assert value == shown(default), (
                f"{key}: the sample shows {value!r}, the default is {default!r}")


def test_load_config_with_example_gives_documented_values() -> None:
    config = load_config(EXAMPLE, check_paths=False)
    assert config.schedule["postgres_backup"] == Schedule(unit="day", at="02:30")
    assert config.postgres is not None and config.postgres.databases == ("app",)
    assert config.retention.keep_daily == 7
    assert config.drill.rto_seconds == {"postgres": 1800.0, "k3s": 900.0}
    assert config.mail.security == "starttls" and config.mail.to == ("ops@example.org",)
    assert config.agent.lock_dir == Path("/var/lib/socle-agent/locks")


def test_parse_config_with_nothing_gives_defaults() -> None:
    config = parse_config({}, check_paths=False)
    assert config.postgres is None
    assert config.metrics.port == 9464
    assert not config.mail.enabled


def test_parse_config_with_wrong_type_names_the_key() -> None:
    assert problems_of({"retention": {"keep_daily": "x"}}) == [
        "retention.keep_daily: expected an integer, got 'x'"
    ]


def test_parse_config_with_bool_for_integer_is_refused() -> None:
    assert problems_of({"postgres": {"port": True}}) == [
        "postgres.port: expected an integer, got True"
    ]


def test_parse_config_with_unknown_keys_names_each() -> None:
    problems = problems_of({"agent": {"backupdir": "/x"}, "extra": {}})
    assert problems == ["agent.backupdir: unknown key", "extra: unknown key"]


def test_parse_config_with_bad_schedule_names_the_job() -> None:
    problems = problems_of({"schedule": {"prune": "daily at 26:00", "nap": "hourly"}})
    assert problems[0].startswith("schedule.prune: no such time of day")
    assert problems[1].startswith("schedule.nap: unknown job")


def test_parse_config_with_postgres_job_but_no_postgres_section_is_refused() -> None:
    assert problems_of({"schedule": {"postgres_backup": "hourly"}}) == [
        "schedule.postgres_backup: scheduled, but there is no [postgres] section"
    ]


def test_parse_config_with_bad_choices_and_ranges_lists_all() -> None:
    problems = problems_of(
        {
            "postgres": {"format": "tar", "compression": 12},
            "mail": {"host": "h", "from": "a@b", "to": [], "security": "ssl"},
            "disk": {"min_free_ratio": 1.5},
        }
    )
    assert problems == [
        "postgres.format: expected one of custom, directory, got 'tar'",
        'postgres.compression: expected "auto", "none", gzip, lz4 or zstd with an optional '
        '":LEVEL", or a gzip level from 0 to 9, got 12',
        "disk.min_free_ratio: expected a number between 0 and 1.0, got 1.5",
        "mail.security: expected one of starttls, tls, none, got 'ssl'",
        "mail.to: at least one recipient is needed when mail is enabled",
    ]


def test_parse_config_with_missing_required_key_names_it() -> None:
    problems = problems_of({"postgres": {"kubernetes": {"service": "pg"}}})
    assert problems == ["postgres.kubernetes.secret: required key is missing"]


def test_parse_config_reads_drill_checks_and_refuses_bad_ones() -> None:
    config = parse_config(
        {"postgres": {}, "drill": {"checks": [{"database": "app", "sql": "select 1",
                                               "expect": 1}]}},
        check_paths=False,
    )
    assert config.drill.checks == (SqlCheck("app", "select 1", "1"),)
    assert problems_of({"postgres": {}, "drill": {"checks": [{"sql": "select 1", "db": "x"}]}}
                       ) == [
        "drill.checks[0].database: required key is missing",
        "drill.checks[0].db: unknown key",
    ]
    assert problems_of({"drill": {"scratch_prefix": ""}}) == [
        "drill.scratch_prefix: must not be empty"
    ]
    assert problems_of({"drill": {"rto_seconds": {"mysql": 5}}}) == [
        "drill.rto_seconds.mysql: unknown backup kind; expected one of k3s, postgres"
    ]


def test_parse_config_with_unreachable_paths_names_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    problems = problems_of(
        {
            "agent": {"backup_dir": str(blocker / "backups"), "state_file": str(tmp_path / "s")},
            "postgres": {"password_file": str(tmp_path / "nope"), "bin_dir": str(tmp_path)},
            "disk": {"mounts": [str(tmp_path / "gone")]},
        },
        check_paths=True,
    )
    assert problems == [
        f"agent.backup_dir: {str(blocker)!r} is not a directory",
        f"postgres.password_file: {str(tmp_path / 'nope')!r} does not exist or is not a file",
        f"postgres.bin_dir: program {str(tmp_path / 'pg_dump')!r} not found",
        f"disk.mounts[0]: {str(tmp_path / 'gone')!r} is not a directory",
    ]


def test_parse_config_with_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "mail.toml"
    secret.write_text('username = "u"\npassword = "p"\n')
    secret.chmod(0o644)
    problems = problems_of(
        {
            "agent": {"backup_dir": str(tmp_path), "state_file": str(tmp_path / "s.json")},
            "mail": {"host": "h", "from": "a@b", "to": ["c@d"], "secrets_file": str(secret)},
        },
        check_paths=True,
    )
    assert problems == [
        f"mail.secrets_file: {str(secret)!r} must be readable by its owner only (mode 0644)"
    ]


def test_load_config_with_truncated_file_reports_toml_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(EXAMPLE.read_text()[:300] + '\n[retention\nkeep_last = "')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0].startswith("not valid TOML")
    assert str(path) in str(caught.value)


def test_load_config_with_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "absent.toml")


def test_parse_config_refuses_dangerous_settings_naming_each_key() -> None:
    problems = problems_of({
        "agent": {"network_timeout_seconds": 0},
        "postgres": {"dsn": "host=db user=app password=hunter2", "timeout_seconds": 0},
        "metrics": {"port": 0},
        "mail": {"host": "h", "from": "a@b", "to": ["c@d"], "security": "none",
                 "secrets_file": "/etc/socle/mail-secrets.toml", "timeout_seconds": 0.0},
    })
    assert problems == [
        "agent.network_timeout_seconds: expected a number of seconds above 0, got 0.0",
        "postgres.timeout_seconds: expected a number of seconds above 0, got 0.0",
        "postgres.dsn: holds a password, which would show in the process list of every local "
        "user; put it in postgres.password_file",
        "metrics.port: expected an integer of at least 1, got 0",
        "mail.timeout_seconds: expected a number of seconds above 0, got 0.0",
        'mail.secrets_file: a login over an unencrypted connection (mail.security = "none") '
        'would send the password in clear; use "starttls" or "tls"',
    ]


def test_parse_config_refuses_a_drill_check_of_a_database_not_backed_up() -> None:
    problems = problems_of({
        "postgres": {"databases": ["app"]},
        "drill": {"checks": [{"database": "ap", "sql": "select true"}]},
    })
    assert problems == [
        "drill.checks[0].database: 'ap' is not backed up (postgres.databases = ['app'])"
    ]
