"""The S3 destination: real restic with the node's environment against object storage.

No object storage is reachable here: an S3-compatible server runs on the loopback address
as a stand-in (PyPI ``moto[server]``, never shipped). The environment is the one the
deploy writes on the node (``socle.offsite_files``), read back with the documented
parser, so the agent's job sees exactly this. Real object storage is tried where
SOCLE_S3_TEST_ENDPOINT, SOCLE_S3_TEST_BUCKET, SOCLE_S3_TEST_REGION,
SOCLE_S3_TEST_ACCESS_KEY_ID and SOCLE_S3_TEST_SECRET_ACCESS_KEY are given (a bucket the
test may write into; it removes what it wrote).

The stand-in does not enforce access policies, so append-only on S3 (a key without
delete rights) is not shown here: docs/offsite.md says how to set it up at the provider.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from socle_agent.offsite.environment import parse_environment

from socle.offsite_files import environment_file
from socle.offsite_settings import OffsiteSettings, offsite_settings
from tests.standins.s3 import s3_server

REAL = ("SOCLE_S3_TEST_ENDPOINT", "SOCLE_S3_TEST_BUCKET", "SOCLE_S3_TEST_REGION",
        "SOCLE_S3_TEST_ACCESS_KEY_ID", "SOCLE_S3_TEST_SECRET_ACCESS_KEY")  # fmt: skip


@dataclass
class Bucket:
    """An S3 bucket, the node's settings and secrets for it, and a client to look inside."""

    settings: OffsiteSettings
    secrets: dict[str, str]
    client: Any
    name: str
    prefix: str


def bucket_for(endpoint: str, name: str, region: str, key_id: str, secret: str) -> Bucket:
    prefix = "socle-test/" + secrets.token_hex(4)
    table = {"destination": "s3", "sops_file": "unused",
             "s3": {"endpoint": endpoint, "bucket": name, "prefix": prefix, "region": region,
                    "insecure_http": endpoint.startswith("http://")}}  # fmt: skip
    settings = offsite_settings({"offsite": table}, "vps")
    assert settings is not None
    client = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                          aws_access_key_id=key_id, aws_secret_access_key=secret)  # fmt: skip
    values = {
        "offsite_restic_password": secrets.token_urlsafe(24),
        "offsite_s3_access_key_id": key_id,
        "offsite_s3_secret_access_key": secret,
    }
    return Bucket(settings, values, client, name, prefix)


@pytest.fixture(scope="module")
def standin_bucket() -> Iterator[Bucket]:
    with s3_server() as endpoint:
        bucket = bucket_for(endpoint, "socle-offsite", "us-east-1",
                            "AKIASTANDIN", "stand-in/secret+key")  # fmt: skip
        bucket.client.create_bucket(Bucket=bucket.name)
        yield bucket


@pytest.fixture
def real_bucket() -> Iterator[Bucket]:
    missing = [name for name in REAL if not os.environ.get(name)]
    if missing:
        pytest.skip(f"no object storage credentials here: set {', '.join(missing)}")
    bucket = bucket_for(*(os.environ[name] for name in REAL[:3]),
                        *(os.environ[name] for name in REAL[3:]))  # fmt: skip
    yield bucket
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix=bucket.prefix + "/")
    for item in listed.get("Contents", []):
        bucket.client.delete_object(Bucket=bucket.name, Key=item["Key"])


def node_environment(bucket: Bucket, workdir: Path) -> dict[str, str]:
    """The node's environment file, read as documented, its two paths moved to ``workdir``."""
    values = parse_environment(environment_file(bucket.settings, bucket.secrets))
    password = workdir / "password"
    password.write_text(bucket.secrets["offsite_restic_password"] + "\n")
    password.chmod(0o600)
    values["RESTIC_PASSWORD_FILE"] = str(password)
    values["RESTIC_CACHE_DIR"] = str(workdir / "cache")
    return {"PATH": os.environ["PATH"], "HOME": str(workdir), **values}


def restic(env: dict[str, str], *args: str) -> str:
    restic_program = shutil.which("restic")
    assert restic_program, "restic is installed by scripts/setup-machine.sh"
    proc = subprocess.run([restic_program, *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, f"restic {args[0]}: {proc.stderr}"
    return proc.stdout


def backup_and_restore(bucket: Bucket, workdir: Path) -> None:
    env = node_environment(bucket, workdir)
    marker = "ROW-" + secrets.token_hex(8)
    folder = workdir / "postgres" / "app" / "20250131T020000Z-1"
    folder.mkdir(parents=True)
    (folder / "dump.tsv").write_text("".join(f"{i}\t{marker}\trow {i}\n" for i in range(5000)))

    restic(env, "init")
    restic(env, "backup", "--host", env["SOCLE_OFFSITE_HOST"], "--tag", "kind=postgres",
           "--tag", "database=app", str(folder))  # fmt: skip
    restic(env, "restore", "latest", "--tag", "kind=postgres", "--target", str(workdir / "back"))

    restored = workdir / "back" / folder.relative_to("/")
    assert (restored / "dump.tsv").read_text() == (folder / "dump.tsv").read_text()
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix=bucket.prefix + "/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any("/data/" in key for key in keys) and any("/snapshots/" in key for key in keys)
    for key in keys:
        body = bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read()
        assert marker.encode() not in body and b"row 1\n" not in body, key


def test_a_backup_goes_to_s3_encrypted_and_comes_back_whole(
    standin_bucket: Bucket, tmp_path: Path
) -> None:
    backup_and_restore(standin_bucket, tmp_path)


@pytest.mark.internet
def test_a_backup_goes_to_real_object_storage_and_comes_back(
    real_bucket: Bucket, tmp_path: Path
) -> None:
    backup_and_restore(real_bucket, tmp_path)
