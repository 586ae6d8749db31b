"""The k3s jobs and commands, run as `socle-agent` against the stand-in datastore.

The node is a stand-in: kine's table in a real WAL-mode SQLite database under a server
dir with token, tls and cred, and small stand-in `systemctl` and `k3s` programs first on
the agent's PATH, saying whether k3s is active and which version it is.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from socle_agent import catalogue
from socle_agent.config import load_config
from socle_agent.jobs import run_job
from socle_agent.metrics import build_registry
from socle_agent.sources.k3s import ARCHIVE_NAME, DRILL_SCRATCH, datastore_path
from socle_agent.state import load_state

from tests.agent.conftest import AGENT, Mailbox, config_text, mail_toml, wait_for, write_config
from tests.standins.commands import write_command
from tests.standins.k3s_datastore import connect, create_datastore, install_server
from tests.standins.kine_writer import WriterProcess

ROWS = 2000
K3S_VERSION = "v1.31.4+k3s1"


@dataclass(frozen=True)
class Node:
    """A stand-in k3s server and the agent's configuration for it."""

    server_dir: Path
    config_file: Path
    files: dict[str, bytes]
    bin_dir: Path
    config: Path

    @property
    def db(self) -> Path:
        return datastore_path(self.server_dir)

    def k3s_says(self, state: str) -> None:
        """Make the stand-in `systemctl is-active k3s` answer `state`."""
        write_command(self.bin_dir, "systemctl", stdout=f"{state}\n",
                      status=0 if state == "active" else 3)

    def agent(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PATH=f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}")
        return subprocess.run(
            [AGENT, "--config", str(config or self.config), *args],
            capture_output=True, text=True, timeout=300, env=env,
        )


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_datastore(tmp_path_factory.mktemp("template") / "state.db", rows=ROWS)


def k3s_toml(server_dir: Path, config_file: Path) -> str:
    return f"""
    [k3s]
    server_dir = "{server_dir}"
    config_file = "{config_file}"

    [drill]
    rto_seconds = {{ k3s = 900 }}
    rpo_seconds = {{ k3s = 25200 }}
    """


def make_node(tmp_path: Path, template_db: Path, extra: str = "",
              backup_dir: Path | None = None) -> Node:
    server_dir, config_file, files = install_server(tmp_path / "node", template_db)
    bin_dir = tmp_path / "bin"
    write_command(bin_dir, "k3s", stdout=f"k3s version {K3S_VERSION} (a1b2c3d4)\n")
    text = config_text(tmp_path, extra=k3s_toml(server_dir, config_file) + extra,
                       backup_dir=backup_dir)
    node = Node(server_dir, config_file, files, bin_dir, write_config(tmp_path, text))
    node.k3s_says("inactive")
    return node


@pytest.fixture
def node(tmp_path: Path, template_db: Path) -> Node:
    return make_node(tmp_path, template_db)


def rows_of(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM kine ORDER BY id").fetchall()
    finally:
        conn.close()


def live_max_id(db: Path) -> int:
    conn = connect(db)
    try:
        return int(conn.execute("SELECT max(id) FROM kine").fetchone()[0])
    finally:
        conn.close()


def snapshot_ids(node: Node) -> list[str]:
    listing = node.agent("list", "--kind", "k3s").stdout.splitlines()[1:]
    return [line.split()[0] for line in listing]


def flip_a_byte(backup: catalogue.Backup) -> None:
    archive = backup.path / ARCHIVE_NAME
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))


def test_snapshot_while_k3s_writes_is_listed_its_drill_passes_and_metrics_show_it(
    node: Node, tmp_path: Path
) -> None:
    with WriterProcess(node.db, tmp_path / "writer.json", interval=0.002) as writer:
        before = live_max_id(node.db)
        wait_for(lambda: live_max_id(node.db) > before)
        snapshot = node.agent("snapshot", "k3s")
        assert snapshot.returncode == 0, snapshot.stderr
    assert writer.result.errors == []

    assert snapshot.stdout.startswith("k3s_snapshot: ok in ")
    [backup] = catalogue.list_backups(tmp_path / "backups", "k3s")
    assert snapshot_ids(node) == [backup.manifest.id]
    details = backup.manifest.details
    assert details["k3s_version"] == K3S_VERSION
    assert before < details["kine_max_revision"] <= writer.result.last_id
    assert f"{backup.manifest.id} ({backup.manifest.size_bytes} bytes" in snapshot.stdout

    drill = node.agent("drill", "k3s")
    assert drill.returncode == 0, drill.stderr
    assert drill.stdout.startswith("k3s_drill: ok in ")
    assert f"{backup.manifest.id} passed in " in drill.stdout
    assert catalogue.find_backup(tmp_path / "backups", backup.manifest.id).manifest.details[
        "verified"]
    assert not (tmp_path / "backups" / "k3s" / DRILL_SCRATCH).exists()
    status = node.agent("status").stdout
    assert "k3s_snapshot     ok" in status and "drill k3s" in status and "backups k3s" in status

    config = load_config(node.config)
    registry = build_registry(config)
    kind = {"kind": "k3s"}
    state = load_state(config.agent.state_file)
    assert registry.get_sample_value("socle_drill_last_result", kind) == 1
    assert registry.get_sample_value("socle_drill_last_duration_seconds", kind) == (
        state["drills"]["k3s"]["duration"])
    assert registry.get_sample_value("socle_rto_target_seconds", kind) == 900
    assert registry.get_sample_value("socle_rpo_target_seconds", kind) == 25200
    newest = {**kind, "subject": "k3s"}
    assert registry.get_sample_value("socle_backup_newest_timestamp_seconds", newest) == (
        backup.manifest.finished)
    assert registry.get_sample_value("socle_backup_retained", kind) == 1
    snap = {"task": "k3s_snapshot"}
    assert registry.get_sample_value("socle_job_last_status", snap) == 1
    assert registry.get_sample_value("socle_job_last_size_bytes", snap) == (
        backup.manifest.size_bytes)
    assert registry.get_sample_value("socle_job_last_status", {"task": "k3s_drill"}) == 1
    assert registry.get_sample_value("socle_k3s_datastore_bytes", {"file": "state.db"}) == (
        node.db.stat().st_size)


def test_drill_of_a_corrupted_snapshot_fails_with_a_reason_and_mails_once_then_recovers(
    tmp_path: Path, template_db: Path, smtp: Mailbox
) -> None:
    node = make_node(tmp_path, template_db, extra=mail_toml(smtp))
    assert node.agent("snapshot", "k3s").returncode == 0
    [backup] = catalogue.list_backups(tmp_path / "backups", "k3s")
    flip_a_byte(backup)

    for _ in range(2):
        drill = node.agent("drill", "k3s")
        assert drill.returncode == 1
        assert f"k3s_drill: failed: {backup.manifest.id}: archive check failed" in drill.stderr
        assert "sha256 differs" in drill.stderr

    assert smtp.subjects() == ["[socle] k3s_drill FAILED"]
    body = smtp.messages[0].get_payload()
    assert isinstance(body, str) and "sha256 differs" in body
    config = load_config(node.config)
    record = load_state(config.agent.state_file)["drills"]["k3s"]
    assert record["result"] == "fail" and "sha256 differs" in record["reason"]
    assert build_registry(config).get_sample_value("socle_drill_last_result", {"kind": "k3s"}) == 0
    assert "verified" not in catalogue.find_backup(
        tmp_path / "backups", backup.manifest.id).manifest.details
    assert not (tmp_path / "backups" / "k3s" / DRILL_SCRATCH).exists()

    assert node.agent("snapshot", "k3s").returncode == 0
    assert node.agent("drill", "k3s").returncode == 0
    assert smtp.subjects() == ["[socle] k3s_drill FAILED", "[socle] k3s_drill recovered"]


def test_drill_of_a_truncated_snapshot_named_by_id_fails_saying_so(node: Node,
                                                                     tmp_path: Path) -> None:
    assert node.agent("snapshot", "k3s").returncode == 0
    assert node.agent("snapshot", "k3s").returncode == 0
    older, newer = catalogue.list_backups(tmp_path / "backups", "k3s")
    archive = older.path / ARCHIVE_NAME
    archive.write_bytes(archive.read_bytes()[:2000])

    drill = node.agent("drill", "k3s", "--snapshot", older.manifest.id)

    assert drill.returncode == 1
    assert f"{older.manifest.id}: archive check failed" in drill.stderr and "size" in drill.stderr
    assert node.agent("drill", "k3s").returncode == 0


def test_drill_without_any_snapshot_fails(node: Node) -> None:
    drill = node.agent("drill", "k3s")
    assert drill.returncode == 1
    assert "k3s_drill: failed: no snapshot to drill" in drill.stderr


def test_retention_after_a_snapshot_keeps_the_newest_verified_one(
    node: Node, tmp_path: Path
) -> None:
    assert node.agent("snapshot", "k3s").returncode == 0
    assert node.agent("drill", "k3s").returncode == 0
    [verified] = snapshot_ids(node)
    for _ in range(3):
        assert node.agent("snapshot", "k3s").returncode == 0

    ids = snapshot_ids(node)

    # keep_last = 2 in the tests' configuration, and the snapshot that passed its drill
    assert len(ids) == 3 and ids[0] == verified
    state = load_state(load_config(node.config).agent.state_file)
    assert state["backups"]["k3s"]["retained"] == 3


def test_restore_into_a_new_server_dir_gives_back_what_was_saved(
    node: Node, tmp_path: Path
) -> None:
    saved_rows = rows_of(node.db)
    assert node.agent("snapshot", "k3s").returncode == 0
    [snapshot_id] = snapshot_ids(node)
    new_server = tmp_path / "new" / "server"
    new_config_file = tmp_path / "new" / "etc" / "config.yaml"
    new_config = write_config(
        tmp_path, config_text(tmp_path, extra=k3s_toml(new_server, new_config_file)), "new.toml"
    )

    done = node.agent("restore", "k3s", "--snapshot", snapshot_id, config=new_config)

    assert done.returncode == 0, done.stderr
    assert rows_of(datastore_path(new_server)) == saved_rows
    for rel, content in node.files.items():
        path = new_config_file if rel == "config.yaml" else new_server / rel
        assert path.read_bytes() == content, rel
    lines = done.stdout.splitlines()
    assert lines[0] == f"checking {snapshot_id} and restoring it into {new_server}"
    assert f"restored k3s snapshot {snapshot_id}:" in lines
    steps = lines[lines.index("next steps:") + 1:]
    assert steps[0] == "  1. start k3s: systemctl start k3s"
    assert "check the node" in steps[1]


def test_restore_refuses_while_k3s_is_active_and_changes_nothing(
    node: Node, tmp_path: Path
) -> None:
    assert node.agent("snapshot", "k3s").returncode == 0
    [snapshot_id] = snapshot_ids(node)
    node.k3s_says("active")
    before = {p: p.read_bytes() for p in node.server_dir.rglob("*") if p.is_file()}

    done = node.agent("restore", "k3s", "--snapshot", snapshot_id)

    assert done.returncode == 3
    assert "refusing to restore: k3s is active: stop it first" in done.stderr
    assert {p: p.read_bytes() for p in node.server_dir.rglob("*") if p.is_file()} == before


def test_restore_of_a_damaged_snapshot_refuses_and_changes_nothing(
    node: Node, tmp_path: Path
) -> None:
    assert node.agent("snapshot", "k3s").returncode == 0
    [backup] = catalogue.list_backups(tmp_path / "backups", "k3s")
    flip_a_byte(backup)
    before = {p: p.read_bytes() for p in node.server_dir.rglob("*") if p.is_file()}

    done = node.agent("restore", "k3s", "--snapshot", backup.manifest.id)

    assert done.returncode == 3
    assert "refusing to restore a damaged snapshot: archive check failed" in done.stderr
    assert {p: p.read_bytes() for p in node.server_dir.rglob("*") if p.is_file()} == before


def test_restore_of_an_unknown_snapshot_exits_4(node: Node) -> None:
    done = node.agent("restore", "k3s", "--snapshot", "k3s-nope")
    assert done.returncode == 4
    assert "no backup with id 'k3s-nope'" in done.stderr


def test_snapshot_that_would_not_fit_is_refused_and_leaves_nothing(
    tmp_path: Path, template_db: Path, small_fs: Callable[[int], Path], smtp: Mailbox
) -> None:
    # the datastore is about 3.5 MB; its copy and archive need more than 4 MiB minus 5 %
    backup_dir = small_fs(4)
    node = make_node(tmp_path, template_db, extra=mail_toml(smtp), backup_dir=backup_dir)

    done = node.agent("snapshot", "k3s")

    assert done.returncode == 1
    assert "k3s_snapshot: failed: disk guard refused the job:" in done.stderr
    assert list((backup_dir / "k3s").iterdir()) == []
    assert smtp.subjects() == ["[socle] k3s_snapshot FAILED"]


def test_snapshot_without_a_datastore_fails_saying_so(node: Node, tmp_path: Path) -> None:
    shutil.rmtree(node.db.parent)

    done = node.agent("snapshot", "k3s")

    assert done.returncode == 1
    assert f"no k3s datastore at {node.db}" in done.stderr
    assert catalogue.list_backups(tmp_path / "backups", "k3s") == []


def test_snapshot_job_of_a_stopping_agent_is_aborted_and_records_nothing(
    node: Node, tmp_path: Path
) -> None:
    config = load_config(node.config)
    stopping = threading.Event()
    stopping.set()

    result = run_job("k3s_snapshot", config, cancel=stopping)

    assert result.status == "aborted"
    assert "k3s_snapshot" not in load_state(config.agent.state_file).get("jobs", {})
    assert not (tmp_path / "backups" / "k3s").exists()
