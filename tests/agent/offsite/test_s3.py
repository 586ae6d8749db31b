"""The off-site jobs against S3-compatible object storage: a stand-in server on the
loopback address (tests/standins/s3.py), with real restic. The node's environment file is
the one deploys/offsite.py writes for an `s3` destination, read by the agent."""

from __future__ import annotations

from pathlib import Path

from socle_agent.offsite.environment import parse_environment

from socle.offsite_files import environment_file
from tests.agent.conftest import PgCluster
from tests.agent.offsite.conftest import make_node
from tests.agent.offsite_repository import write_node_files
from tests.socle.test_offsite_s3 import Bucket, bucket_for
from tests.standins.s3 import s3_server


def test_copies_go_to_object_storage_and_are_drilled_from_there(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path, template_db: Path,
) -> None:
    with s3_server() as endpoint:
        bucket: Bucket = bucket_for(endpoint, "socle-offsite", "us-east-1", "AKIASTANDIN",
                                    "stand-in/" + tmp_path.name)  # not-a-secret: the stand-in's
        bucket.client.create_bucket(Bucket=bucket.name)
        values = parse_environment(environment_file(bucket.settings, bucket.secrets))
        files = write_node_files(tmp_path / "etc-offsite", values,
                                 bucket.secrets["offsite_restic_password"])
        files.restic("init")
        node = make_node(tmp_path, pg, pg_password_file, files, template_db)

        backup = node.agent("backup", "postgres")
        drill = node.agent("drill", "offsite", "--kind", "postgres")
        snapshots = node.snapshots()

    said = backup.stdout + backup.stderr + drill.stdout + drill.stderr
    assert backup.returncode == 0, backup.stderr
    assert [s["tags"][0] for s in snapshots] == ["kind=postgres"]  # type: ignore[index]
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert bucket.secrets["offsite_s3_secret_access_key"] not in said
