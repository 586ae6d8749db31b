"""The node's off-site files, rendered from the settings and read back as documented."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from socle_agent.offsite.environment import parse_environment

from socle.offsite_files import (
    EnvironmentFileError,
    environment_file,
    known_hosts,
    render_environment,
    ssh_config,
)
from socle.offsite_settings import OffsiteSettings, SftpDestination, offsite_settings
from tests.socle.test_offsite_settings import HOST_KEY, TABLE

# Every character a password manager may produce, and then some.
HOSTILE = "p@ss:w/rd%$'\"`;&|<> \\~#!*?[]{}()é"
SECRETS = {
    "offsite_restic_password": "x" * 24,
    "offsite_rest_password": HOSTILE,
    "offsite_s3_access_key_id": "AKIAEXAMPLE",
    "offsite_s3_secret_access_key": "example/secret+key",  # not-a-secret: a test value
}


def settings_for(destination: str, **changes: Any) -> OffsiteSettings:
    table = {**TABLE, "destination": destination, **changes}
    settings = offsite_settings({"offsite": table}, "vps")
    assert settings is not None
    return settings


def test_rest_environment_holds_the_login_percent_encoded() -> None:
    values = parse_environment(environment_file(settings_for("rest"), SECRETS))

    assert values == {
        "SOCLE_OFFSITE_DESTINATION": "rest",
        "SOCLE_OFFSITE_HOST": "vps",
        "SOCLE_OFFSITE_LIMIT_UPLOAD_KIB": "0",
        "RESTIC_REPOSITORY": "rest:https://vps1:p%40ss%3Aw%2Frd%25%24%27%22%60%3B%26%7C%3C%3E%20"
        "%5C%7E%23%21%2A%3F%5B%5D%7B%7D%28%29%C3%A9@backup.example.net:8000/vps1/",
        "RESTIC_PASSWORD_FILE": "/etc/socle/offsite/password",
        "RESTIC_CACHE_DIR": "/var/cache/socle-offsite",
    }


def test_sftp_environment_runs_restic_through_the_ssh_program() -> None:
    values = parse_environment(environment_file(settings_for("sftp", limit_upload_kib=2048),
                                                SECRETS))  # fmt: skip

    assert values["RESTIC_REPOSITORY"] == "rclone:socle-offsite:"
    assert (
        values["SOCLE_OFFSITE_RESTIC_OPTION"] == "rclone.program=/usr/local/lib/socle/offsite-ssh"
    )
    assert values["SOCLE_OFFSITE_LIMIT_UPLOAD_KIB"] == "2048"


def test_s3_environment_holds_the_keys_and_region() -> None:
    values = parse_environment(environment_file(settings_for("s3"), SECRETS))

    assert (
        values["RESTIC_REPOSITORY"] == "s3:https://s3.gra.io.cloud.ovh.net/socle-backups/vps1/node"
    )
    assert values["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE"
    assert values["AWS_SECRET_ACCESS_KEY"] == SECRETS["offsite_s3_secret_access_key"]
    assert values["AWS_DEFAULT_REGION"] == "gra"


def test_the_shell_reads_the_file_exactly_as_the_parser_does(tmp_path: Path) -> None:
    for destination in ("rest", "sftp", "s3"):
        text = environment_file(settings_for(destination), SECRETS)
        path = tmp_path / "env"
        path.write_text(text)
        shell = subprocess.run(
            ["sh", "-c", f"set -a; . {path}; set +a; env -0"], env={}, capture_output=True,
            check=True,
        ).stdout.decode()  # fmt: skip
        seen = dict(item.split("=", 1) for item in shell.split("\0") if "=" in item)
        parsed = parse_environment(text)

        assert {name: seen[name] for name in parsed} == parsed


def test_a_value_that_is_not_plain_is_refused_without_showing_it() -> None:
    secrets = {**SECRETS, "offsite_s3_secret_access_key": "abc'$(reboot)"}

    with pytest.raises(EnvironmentFileError, match="AWS_SECRET_ACCESS_KEY") as raised:
        environment_file(settings_for("s3"), secrets)

    assert "reboot" not in str(raised.value)


@pytest.mark.parametrize("line", ["export A=1", "A = 1", "A='1'", "a=1", "A=$(reboot)"])
def test_lines_that_are_not_plain_assignments_are_refused(line: str) -> None:
    with pytest.raises(EnvironmentFileError, match="line 2"):
        parse_environment(f"# header\n{line}\n")


def test_render_refuses_a_bad_name() -> None:
    with pytest.raises(EnvironmentFileError, match="not a variable name"):
        render_environment({"A B": "1"}, "header")


def test_ssh_files_pin_the_host_key_on_its_port() -> None:
    destination = SftpDestination("backup.example.net", 2222, "socle-vps1", HOST_KEY)

    assert known_hosts(destination) == f"[backup.example.net]:2222 {HOST_KEY}\n"
    config = ssh_config(destination)
    assert "    StrictHostKeyChecking yes\n" in config
    assert "    Port 2222\n" in config and "    User socle-vps1\n" in config
