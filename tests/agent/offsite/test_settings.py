"""The `[offsite]` table and the node's environment file: refused when wrong, naming why,
before restic runs; credentials hidden in whatever restic says."""

from __future__ import annotations

from pathlib import Path

import pytest
from socle_agent.base import JobOutcome
from socle_agent.config import ConfigError, parse_config
from socle_agent.jobs import follow_ups
from socle_agent.offsite.environment import (
    EnvironmentFileError,
    OffsiteNotSetUp,
    parse_environment,
    read_destination,
)

ENV = (
    "# comment\n"
    "SOCLE_OFFSITE_DESTINATION=rest\nSOCLE_OFFSITE_HOST=vps1\n"
    "SOCLE_OFFSITE_LIMIT_UPLOAD_KIB=512\n"
    "RESTIC_REPOSITORY=rest:https://vps1:p%40ss%2Fw%25rd@backup.example.net:8000/vps1/\n"
    "RESTIC_PASSWORD_FILE=/etc/socle/offsite/password\n"
    "RESTIC_CACHE_DIR=/var/cache/socle-offsite\n"
    "SOCLE_OFFSITE_RESTIC_OPTION=rclone.program=/usr/local/lib/socle/offsite-ssh\n"
    "AWS_SECRET_ACCESS_KEY=secret/key+1\n"
    "LD_PRELOAD=/tmp/evil.so\n"
)


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, check_paths=False)
    return caught.value.problems


def env_file(tmp_path: Path, text: str = ENV, mode: int = 0o600) -> Path:
    path = tmp_path / "env"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_table_is_checked_naming_each_key() -> None:
    assert problems({"offsite": {"kinds": ["postgres", "mysql"], "check_read_data_percent": 0,
                                 "rpo_seconds": {"notes": 5}, "timeout_seconds": 0,
                                 "copy_after_backup": "yes"}}) == [
        "offsite.kinds: unknown backup kind 'mysql'; expected some of k3s, postgres",
        "offsite.rpo_seconds.notes: unknown backup kind; expected one of k3s, postgres",
        "offsite.check_read_data_percent: expected a percentage above 0, up to 100",
        "offsite.copy_after_backup: expected true or false, got 'yes'",
        "offsite.timeout_seconds: expected a number of seconds above 0, got 0.0",
    ]
    assert problems({"schedule": {"offsite_copy": "hourly"}}) == [
        "schedule.offsite_copy: scheduled, but there is no [offsite] section"]


def test_the_offsite_rpo_defaults_to_each_kinds_own() -> None:
    config = parse_config({"drill": {"rpo_seconds": {"postgres": 3600, "k3s": 7200}},
                           "offsite": {"rpo_seconds": {"k3s": 600}, "kinds": ["k3s"]}},
                          check_paths=False)
    assert config.sources["offsite"].rpo(config) == {"k3s": 600.0}
    config = parse_config({"drill": {"rpo_seconds": {"postgres": 3600}}, "offsite": {}},
                          check_paths=False)
    assert config.sources["offsite"].rpo(config) == {"postgres": 3600.0}


def test_a_copy_follows_a_backup_only_with_an_offsite_table() -> None:
    wrote = JobOutcome(size_bytes=100)
    without = parse_config({}, check_paths=False)
    with_table = parse_config({"offsite": {}}, check_paths=False)
    off = parse_config({"offsite": {"copy_after_backup": False}}, check_paths=False)

    assert follow_ups(without, "postgres_backup", wrote) == []
    assert follow_ups(with_table, "postgres_backup", wrote) == ["offsite_copy"]
    assert follow_ups(with_table, "k3s_snapshot", wrote) == ["offsite_copy"]
    assert follow_ups(with_table, "postgres_drill", JobOutcome()) == []
    assert follow_ups(with_table, "offsite_copy", wrote) == []
    assert follow_ups(off, "postgres_backup", wrote) == []


def test_the_environment_file_gives_restic_its_variables_only(tmp_path: Path) -> None:
    destination = read_destination(env_file(tmp_path))

    assert destination.host == "vps1"
    assert destination.global_arguments() == [
        "-o", "rclone.program=/usr/local/lib/socle/offsite-ssh", "--limit-upload", "512"]
    assert sorted(destination.variables) == [
        "AWS_SECRET_ACCESS_KEY", "RESTIC_CACHE_DIR", "RESTIC_PASSWORD_FILE", "RESTIC_REPOSITORY"]
    said = ("Fatal: unable to open http://vps1:p%40ss%2Fw%25rd@backup.example.net "
            "(p@ss/w%rd) with secret/key+1")
    assert destination.redact(said) == (
        "Fatal: unable to open http://vps1:***@backup.example.net (***) with ***")


@pytest.mark.parametrize(("text", "mode", "expected"), [
    (None, 0o600, "is missing (deploys/offsite.py writes it)"),
    (ENV, 0o640, "that only it can read (mode 0600)"),
    ("RESTIC_REPOSITORY='quoted'\n", 0o600, "line 1 is not NAME=value of plain characters"),
    ("SOCLE_OFFSITE_HOST=vps1\n", 0o600, "does not set RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE"),
])
def test_an_unusable_environment_file_is_refused_saying_why(
    tmp_path: Path, text: str | None, mode: int, expected: str
) -> None:
    path = env_file(tmp_path, text, mode) if text is not None else tmp_path / "env"

    with pytest.raises(OffsiteNotSetUp) as caught:
        read_destination(path)

    assert expected in str(caught.value)
    assert "p%40ss" not in str(caught.value)


def test_a_link_in_place_of_the_environment_file_is_refused(tmp_path: Path) -> None:
    target = env_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(target)

    with pytest.raises(OffsiteNotSetUp):
        read_destination(link)


def test_the_parser_reads_the_documented_grammar_only() -> None:
    assert parse_environment("\n# x\nA=b=c\nB=\n") == {"A": "b=c", "B": ""}
    for bad in ("a=lower", "A=with space", "A=$HOME", "export A=b", "A"):
        with pytest.raises(EnvironmentFileError):
            parse_environment(bad)
