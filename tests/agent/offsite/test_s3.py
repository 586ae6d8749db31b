"""The off-site jobs against S3-compatible object storage: a stand-in server on the
loopback address (PyPI `moto[server]`, never shipped), with real restic. The node's keys
come from its environment file, as deploys/offsite.py writes it for an `s3` destination."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.agent.conftest import PgCluster
from tests.agent.offsite.conftest import OffsiteNode, make_node
from tests.agent.offsite_repository import write_node_files

SECRET_KEY = "stand-in/secret+key-0123456789"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="AKIASTANDIN", aws_secret_access_key=SECRET_KEY,
                     ).create_bucket(Bucket="socle-offsite")
        yield endpoint
    finally:
        server.stop()


def test_copies_go_to_object_storage_and_are_drilled_from_there(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path, template_db: Path,
    s3_endpoint: str,
) -> None:
    files = write_node_files(tmp_path / "etc-offsite", {
        "SOCLE_OFFSITE_DESTINATION": "s3", "SOCLE_OFFSITE_HOST": "vps",
        "SOCLE_OFFSITE_LIMIT_UPLOAD_KIB": "0",
        "RESTIC_REPOSITORY": f"s3:{s3_endpoint}/socle-offsite/{tmp_path.name}",
        "AWS_ACCESS_KEY_ID": "AKIASTANDIN", "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1"}, "s3-repository-password")  # fmt: skip
    files.restic("init")
    node: OffsiteNode = make_node(tmp_path, pg, pg_password_file, files, template_db)

    backup = node.agent("backup", "postgres")
    drill = node.agent("drill", "offsite", "--kind", "postgres")

    assert backup.returncode == 0, backup.stderr
    assert [s["tags"][0] for s in node.snapshots()] == ["kind=postgres"]  # type: ignore[index]
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert SECRET_KEY not in backup.stdout + backup.stderr + drill.stdout + drill.stderr
