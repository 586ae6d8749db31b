"""Restores from off-site: fetched into a scratch catalogue, checked against the manifest,
then restored the usual way; on a node that lost every local backup."""

from __future__ import annotations

import json
from pathlib import Path

from socle_agent.offsite.fetch import scratch_root

from tests.agent.conftest import PgCluster
from tests.agent.offsite.conftest import OffsiteNode


def without_local_backups(node: OffsiteNode) -> Path:
    """A configuration for the same node whose backup folder and state are new and empty,
    as on a host rebuilt after the loss of the old one."""
    text = node.config_path.read_text()
    backups = str(node.config().agent.backup_dir)
    state = str(node.config().agent.state_file)
    rebuilt = node.root / "rebuilt.toml"
    rebuilt.write_text(text.replace(backups, str(node.root / "new-backups")).replace(
        state, str(node.root / "new-state" / "state.json")))
    return rebuilt


def table_digest(pg: PgCluster, database: str) -> str:
    return pg.psql("select md5(string_agg(t::text, ',' order by id)) from customers t",
                   database).strip()


def test_a_database_is_restored_from_off_site_on_a_node_without_backups(
    node: OffsiteNode, pg: PgCluster
) -> None:
    assert node.agent("backup", "postgres").returncode == 0
    [backup] = node.backups("postgres")
    rebuilt = without_local_backups(node)

    listed = node.agent("list", "--offsite", config=rebuilt)
    restored = node.agent("restore", "postgres", "--from", "offsite", "--backup",
                          backup.manifest.id, "--database", "shop_from_offsite", config=rebuilt)

    assert f"{backup.manifest.id}" in listed.stdout and listed.stdout.rstrip().endswith("offsite")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "checking " + backup.manifest.id + " against its manifest" in restored.stdout
    assert "tables match the manifest's row counts" in restored.stdout
    assert table_digest(pg, "shop_from_offsite") == table_digest(pg, "shop")
    assert list(scratch_root(node.root / "new-backups").iterdir()) == []
    pg.psql("drop database shop_from_offsite")


def test_a_copy_that_does_not_match_its_manifest_is_refused_and_nothing_changes(
    node: OffsiteNode, pg: PgCluster
) -> None:
    node.rewrite("[offsite]\n", "[offsite]\ncopy_after_backup = false\n")
    assert node.agent("backup", "postgres").returncode == 0
    [backup] = node.backups("postgres")
    with open(backup.path / "globals.sql", "a") as damaged:
        damaged.write("-- changed after the backup\n")
    assert node.agent("copy", "offsite").returncode == 0
    rebuilt = without_local_backups(node)
    before = table_digest(pg, "shop")

    refused = node.agent("restore", "postgres", "--from", "offsite", "--backup",
                         backup.manifest.id, "--database", "shop", "--replace", config=rebuilt)

    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "does not match its manifest: globals.sql: size" in refused.stderr
    assert table_digest(pg, "shop") == before
    assert pg.psql("select count(*) from pg_database where datname like 'shop_%'").strip() == "0"


def test_an_id_that_is_not_off_site_is_not_found(node: OffsiteNode) -> None:
    missing = node.agent("restore", "k3s", "--from", "offsite", "--snapshot",
                         "k3s-20000101T000000Z")
    hostile = node.agent("restore", "k3s", "--from", "offsite", "--snapshot", "../../etc")

    assert missing.returncode == 4 and "no k3s backup with id" in missing.stderr
    assert hostile.returncode == 4 and "is not a backup id" in hostile.stderr


def test_k3s_is_restored_from_off_site(node: OffsiteNode) -> None:
    assert node.agent("snapshot", "k3s").returncode == 0
    [snapshot] = node.backups("k3s")
    token = node.server_dir / "token"
    token.write_text("changed after the snapshot\n")
    rebuilt = without_local_backups(node)

    restored = node.agent("restore", "k3s", "--from", "offsite", "--snapshot",
                          snapshot.manifest.id, config=rebuilt)

    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert token.read_bytes() == node.k3s_files["token"]
    assert (node.server_dir / "tls" / "server-ca.key").read_bytes() == node.k3s_files[
        "tls/server-ca.key"]
    assert "kept aside (not deleted)" in restored.stdout


def test_a_host_rebuilt_under_another_name_reads_the_lost_hosts_copies_when_asked(
    node: OffsiteNode, pg: PgCluster
) -> None:
    assert node.agent("backup", "postgres").returncode == 0
    [backup] = node.backups("postgres")
    rebuilt = without_local_backups(node)
    renamed_env = node.root / "renamed-offsite.env"
    renamed_env.write_text(node.files.env_file.read_text().replace(
        f"SOCLE_OFFSITE_HOST={node.host}\n", "SOCLE_OFFSITE_HOST=rebuilt-elsewhere\n"))
    renamed_env.chmod(0o600)
    rebuilt.write_text(rebuilt.read_text().replace(str(node.files.env_file), str(renamed_env)))

    own = node.agent("list", "--offsite", "--json", config=rebuilt)
    lost = node.agent("list", "--offsite", "--json", "--origin-host", node.host, config=rebuilt)
    hostile = node.agent("list", "--offsite", "--origin-host", "a b;rm", config=rebuilt)
    restored = node.agent("restore", "postgres", "--from", "offsite", "--origin-host", node.host,
                          "--backup", backup.manifest.id, "--database", "shop_renamed",
                          config=rebuilt)  # fmt: skip

    assert own.returncode == 0 and json.loads(own.stdout) == [], own.stderr
    [copy] = json.loads(lost.stdout)
    assert (copy["id"], copy["where"], copy["folder"]) == (backup.manifest.id, ["offsite"], None)
    assert hostile.returncode == 2 and "is not a plain host name" in hostile.stderr
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert table_digest(pg, "shop_renamed") == table_digest(pg, "shop")
    pg.psql("drop database shop_renamed")
