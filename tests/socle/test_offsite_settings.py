"""The inventory's off-site table, checked before anything on the node changes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from socle.inventory_checks import InventoryDataError
from socle.offsite_settings import (
    RestDestination,
    S3Destination,
    SftpDestination,
    offsite_retention,
    offsite_settings,
    read_offsite_secrets,
)
from tests.sops_files import write_sops_file

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDIa3sVfn6NA4TbYXE+Q0pBQEnFGn0x3Uo7g4d0kiqXh"
TABLE: dict[str, Any] = {
    "destination": "rest",
    "rest": {"url": "https://backup.example.net:8000/vps1", "user": "vps1"},
    "sftp": {"host": "backup.example.net", "user": "socle-vps1", "host_key": HOST_KEY},
    "s3": {"endpoint": "https://s3.gra.io.cloud.ovh.net", "bucket": "socle-backups",
           "prefix": "vps1/node", "region": "gra"},
    "sops_file": "secrets/prod.sops.yaml",
    "operator": {"repository": "sftp:socle-vps1@backup.example.net:/srv/socle-restic/vps1"},
}  # fmt: skip


def with_changes(path: str, value: Any) -> dict[str, Any]:
    """TABLE with ``path`` (dotted) set to ``value``, or removed when value is ...."""
    table = copy.deepcopy(TABLE)
    *parents, last = path.split(".")
    target = table
    for name in parents:
        target = target[name]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return {"offsite": table}


def test_each_destination_is_read() -> None:
    rest = offsite_settings({"offsite": TABLE}, "vps")
    sftp = offsite_settings(with_changes("destination", "sftp"), "vps")
    s3 = offsite_settings(with_changes("destination", "s3"), "vps")

    assert rest is not None and rest.destination == RestDestination(
        "https://backup.example.net:8000/vps1/", "vps1"
    )
    assert sftp is not None and sftp.destination == SftpDestination(
        "backup.example.net", 22, "socle-vps1", HOST_KEY
    )
    assert s3 is not None and s3.destination == S3Destination(
        "https://s3.gra.io.cloud.ovh.net", "socle-backups", "vps1/node", "gra"
    )
    assert offsite_settings({}, "vps") is None


@pytest.mark.parametrize(
    ("path", "value", "key", "problem"),
    [
        ("destination", "ftp", "offsite.destination", "expected one of rest, sftp, s3"),
        ("rest.url", "http://backup.example.net/vps1", "offsite.rest.url", "plain http"),
        ("rest.url", "https://vps1:pw@backup.example.net/", "offsite.rest.url", "holds a login"),
        ("rest.url", "https://backup.example.net/a?b=1", "offsite.rest.url", "no query"),
        ("rest.url", "https://backup.example.net/a$(reboot)", "offsite.rest.url", "the path"),
        ("rest.url", "https://backup.example.net/a/../b", "offsite.rest.url", "the path"),
        ("rest.url", "https://-oProxyCommand=x/", "offsite.rest.url", "not a host name"),
        ("rest.user", "root;", "offsite.rest.user", "not a user name"),
        ("rest.insecure_http", "yes", "offsite.rest.insecure_http", "True or False"),
        ("sops_file", ..., "offsite.sops_file", "offsite_restic_password"),
        ("limit_upload_kib", -1, "offsite.limit_upload_kib", "whole number"),
        ("rest.colour", "blue", "offsite.rest.colour", "unknown key"),
        ("operator.repository", "ftp://x", "offsite.operator.repository", "expected sftp:"),
        ("operator.repository", "rest:https://admin:pw@host/", "offsite.operator.repository",
         "holds a login"),
        ("retention", {"keep_last": "3"}, "offsite.retention.keep_last", "whole number"),
    ],
)  # fmt: skip
def test_bad_data_is_refused_naming_the_key(path: str, value: Any, key: str, problem: str) -> None:
    with pytest.raises(InventoryDataError) as raised:
        offsite_settings(with_changes(path, value), "vps")

    assert raised.value.key == key
    assert problem in raised.value.problem


@pytest.mark.parametrize(
    ("path", "value", "key", "problem"),
    [
        ("sftp.host", "-oProxyCommand=touch /tmp/x", "offsite.sftp.host", "not a host name"),
        ("sftp.port", 0, "offsite.sftp.port", "whole number"),
        ("sftp.user", "Root Admin", "offsite.sftp.user", "not a user name"),
        ("sftp.host_key", "AAAAC3Nza", "offsite.sftp.host_key", "expected '<type> <base64>'"),
        ("sftp.host_key", "ssh-ed25519 not*base64", "offsite.sftp.host_key", "not valid base64"),
        ("sftp.host_key", "ssh-rsa " + HOST_KEY.split()[1], "offsite.sftp.host_key",
         "not a ssh-rsa key"),
        ("s3.bucket", "Socle_Backups", "offsite.s3.bucket", "not an S3 bucket name"),
        ("s3.prefix", "vps1/../other", "offsite.s3.prefix", "no . or .. parts"),
        ("s3.prefix", "/vps1", "offsite.s3.prefix", "not a folder in the bucket"),
        ("s3.endpoint", "https://s3.example.net/bucket", "offsite.s3.endpoint", "takes no path"),
        ("s3.region", ..., "offsite.s3.region", "not a region"),
    ],
)  # fmt: skip
def test_bad_ssh_and_s3_data_is_refused(path: str, value: Any, key: str, problem: str) -> None:
    data = with_changes(path, value)
    data["offsite"]["destination"] = path.split(".")[0]

    with pytest.raises(InventoryDataError) as raised:
        offsite_settings(data, "vps")

    assert raised.value.key == key
    assert problem in raised.value.problem


def test_http_is_accepted_when_said_to_be_insecure() -> None:
    data = with_changes("rest.url", "http://10.0.0.2:8000/vps1/")
    data["offsite"]["rest"]["insecure_http"] = True

    settings = offsite_settings(data, "vps")

    assert settings is not None and settings.destination == RestDestination(
        "http://10.0.0.2:8000/vps1/", "vps1"
    )


def test_retention_off_site_is_twice_the_local_one_unless_given() -> None:
    data = {"offsite": TABLE, "agent_settings": {"retention": {"keep_last": 2, "keep_daily": 5}}}
    settings = offsite_settings(data, "vps")
    assert settings is not None

    counts = offsite_retention(data, settings)

    # keep_weekly and keep_monthly: twice the agent's own defaults (4 and 6).
    assert counts == {"keep_last": 4, "keep_daily": 10, "keep_weekly": 8, "keep_monthly": 12}


def test_retention_off_site_shorter_than_local_is_refused() -> None:
    data = with_changes("retention", {"keep_daily": 3})
    data["agent_settings"] = {"retention": {"keep_daily": 7}}
    settings = offsite_settings(data, "vps")
    assert settings is not None

    with pytest.raises(InventoryDataError, match="3 is fewer than the local 7") as raised:
        offsite_retention(data, settings)

    assert raised.value.key == "offsite.retention.keep_daily"


def secrets_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **values: str) -> dict[str, Any]:
    sops_file, key_file = write_sops_file(tmp_path, values)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    return with_changes("sops_file", str(sops_file))


def test_secrets_are_read_from_sops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = secrets_data(tmp_path, monkeypatch, offsite_restic_password="a" * 24,
                        offsite_rest_password="rest-pw")  # fmt: skip
    settings = offsite_settings(data, "vps")
    assert settings is not None

    assert read_offsite_secrets(settings) == {
        "offsite_restic_password": "a" * 24, "offsite_rest_password": "rest-pw",
    }  # fmt: skip
    assert read_offsite_secrets(settings, operator=True) == {"offsite_restic_password": "a" * 24}


def test_a_short_repository_password_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = secrets_data(tmp_path, monkeypatch, offsite_restic_password="hunter2",
                        offsite_rest_password="rest-pw")  # fmt: skip
    settings = offsite_settings(data, "vps")
    assert settings is not None

    with pytest.raises(InventoryDataError, match="shorter than 16 characters"):
        read_offsite_secrets(settings)


def test_a_missing_secret_names_the_sops_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = secrets_data(tmp_path, monkeypatch, offsite_restic_password="a" * 24)
    settings = offsite_settings(data, "vps")
    assert settings is not None

    with pytest.raises(InventoryDataError, match="offsite_rest_password") as raised:
        read_offsite_secrets(settings)

    assert raised.value.key == "offsite.sops_file"
