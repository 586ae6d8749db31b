"""k3s snapshots taken from a live datastore, their drill, and restores."""

from __future__ import annotations

import functools
import json
import shutil
import sqlite3
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from socle_agent.catalogue import Backup, list_backups
from socle_agent.manifest import MANIFEST_NAME, sha256_file
from socle_agent.sources.k3s import (
    ARCHIVE_NAME,
    K3sActiveError,
    K3sStateUnknownError,
    SnapshotInvalidError,
    SnapshotOptions,
    datastore_path,
    datastore_sizes,
    k3s_is_active,
    k3s_version,
    kine_counts,
    restore_snapshot,
    take_snapshot,
    verify_snapshot,
)
from socle_agent.sources.sqlite_backup import ONE_STEP, STEPPED, BackupCancelled, BackupOptions

from tests.standins.commands import write_command
from tests.standins.k3s_datastore import (
    COMPACT_KEY,
    connect,
    create_datastore,
    install_server,
)
from tests.standins.kine_writer import LEASE_PREFIX, WriterProcess

INITIAL_ROWS = 8000


@dataclass(frozen=True)
class Node:
    """A stand-in k3s server: its server dir, config file and the files laid out there."""

    server_dir: Path
    config_file: Path
    files: dict[str, bytes]

    @property
    def db(self) -> Path:
        return datastore_path(self.server_dir)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One filled datastore per module; each test starts from its own copy (it is closed)."""
    return create_datastore(tmp_path_factory.mktemp("template") / "state.db", rows=INITIAL_ROWS)


@pytest.fixture
def node(tmp_path: Path, template_db: Path) -> Node:
    return Node(*install_server(tmp_path / "node", template_db))


@pytest.fixture
def backup_dir(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def never_active() -> bool:
    return False


def live_max_id(db: Path) -> int:
    conn = connect(db)
    try:
        return int(conn.execute("SELECT max(id) FROM kine").fetchone()[0])
    finally:
        conn.close()


def wait_for_writes_beyond(db: Path, revision: int, limit_seconds: float = 120.0) -> None:
    """Wait until the writer has committed past `revision` (a condition, not a delay)."""
    give_up = time.monotonic() + limit_seconds
    while live_max_id(db) <= revision:
        if time.monotonic() > give_up:
            raise AssertionError(f"writer made no progress past revision {revision}")
        time.sleep(0.02)


def unpack(backup: Backup, dest: Path) -> Path:
    with tarfile.open(backup.path / ARCHIVE_NAME, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def assert_consistent_prefix(db: Path) -> int:
    """The snapshot holds whole transactions only: ids 1..N, compaction row and chains agree."""
    conn = sqlite3.connect(db)
    try:
        count, top = conn.execute("SELECT count(*), max(id) FROM kine").fetchone()
        assert count == top, f"ids have a gap: {count} rows, highest id {top}"
        (compact,) = conn.execute(
            "SELECT prev_revision FROM kine WHERE name = ?", (COMPACT_KEY,)
        ).fetchone()
        if top > INITIAL_ROWS + 1:
            # the writer moves the compaction row in the same transaction as each insert
            assert compact == top
        dangling = conn.execute(
            "SELECT count(*) FROM kine AS k WHERE k.name LIKE ? AND k.prev_revision > 0"
            " AND NOT EXISTS (SELECT 1 FROM kine AS p WHERE p.id = k.prev_revision"
            " AND p.name = k.name)",
            (LEASE_PREFIX + "%",),
        ).fetchone()[0]
        assert dangling == 0
    finally:
        conn.close()
    return int(top)


def rows_of(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM kine ORDER BY id").fetchall()
    finally:
        conn.close()


def rewrite_manifest(backup: Backup, **details: object) -> None:
    path = backup.path / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["details"].update(details)
    path.write_text(json.dumps(data))


def test_take_snapshot_while_a_writer_writes_holds_a_consistent_prefix_and_the_writer_sees_no_error(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    stepped = SnapshotOptions()
    one_step = SnapshotOptions(backup=BackupOptions(stepped=False))
    unpinned = SnapshotOptions(backup=BackupOptions(pin_read_snapshot=False, max_restarts=3))
    plans = [stepped, one_step, stepped, unpinned, one_step, stepped]
    taken: list[Backup] = []
    with WriterProcess(node.db, tmp_path / "writer.json", interval=0.002) as writer:
        revision = live_max_id(node.db)
        for options in plans:
            wait_for_writes_beyond(node.db, revision)
            backup = take_snapshot(node.server_dir, node.config_file, backup_dir, options)
            taken.append(backup)
            revision = backup.manifest.details["kine_max_revision"]
    result = writer.result

    assert result.errors == []
    assert result.writes > 0
    tops = []
    for n, backup in enumerate(taken):
        drill = verify_snapshot(backup.path)
        assert drill.passed, drill.reason
        top = assert_consistent_prefix(unpack(backup, tmp_path / f"unpacked-{n}") / "state.db")
        assert top == backup.manifest.details["kine_max_revision"]
        tops.append(top)
    assert tops == sorted(tops) and tops[0] > INITIAL_ROWS + 1
    methods = [b.manifest.details["method"] for b in taken]
    assert methods[0] == STEPPED and methods[1] == ONE_STEP
    assert taken[0].manifest.details["fallback_reason"] is None


def test_take_snapshot_writes_a_listable_archive_with_its_manifest(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    options = SnapshotOptions(k3s_version="v1.31.4+k3s1")

    backup = take_snapshot(node.server_dir, node.config_file, backup_dir, options)

    listed = list_backups(backup_dir, kind="k3s")
    assert [b.manifest.id for b in listed] == [backup.manifest.id]
    manifest = listed[0].manifest
    archive = backup.path / ARCHIVE_NAME
    assert manifest.kind == "k3s"
    assert manifest.files[0].sha256 == sha256_file(archive)
    assert manifest.size_bytes == archive.stat().st_size
    assert manifest.started <= manifest.finished
    details = manifest.details
    assert details["k3s_version"] == "v1.31.4+k3s1"
    assert details["kine_rows"] == INITIAL_ROWS + 1
    assert details["kine_max_revision"] == INITIAL_ROWS + 1
    assert details["datastore_bytes"]["state.db"] == node.db.stat().st_size
    assert details["integrity_check"] == "ok"
    assert details["method"] == STEPPED
    assert details["contents"] == ["config.yaml", "cred", "state.db", "tls", "token"]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive, "r:gz") as tar:
        modes = {m.name: stat.S_IMODE(m.mode) for m in tar.getmembers() if m.isfile()}
    assert set(modes) == {"state.db", *node.files}
    assert set(modes.values()) == {0o600}
    assert not any(p.name.endswith(".partial") for p in (backup_dir / "k3s").iterdir())
    assert sorted(p.name for p in backup.path.iterdir()) == sorted([ARCHIVE_NAME, MANIFEST_NAME])


def test_take_snapshot_twice_in_one_second_gives_two_ids(node: Node, backup_dir: Path) -> None:
    def clock() -> float:
        return 1_764_000_000.0

    first = take_snapshot(node.server_dir, node.config_file, backup_dir, now=clock)
    second = take_snapshot(node.server_dir, node.config_file, backup_dir, now=clock)

    assert first.manifest.id == "k3s-20251124T160000Z"
    assert second.manifest.id == "k3s-20251124T160000Z-2"


def test_take_snapshot_past_its_stepped_deadline_falls_back_to_one_step(
    node: Node, backup_dir: Path
) -> None:
    options = SnapshotOptions(backup=BackupOptions(pages_per_step=1, deadline_seconds=0.0))

    backup = take_snapshot(node.server_dir, node.config_file, backup_dir, options)

    details = backup.manifest.details
    assert details["method"] == ONE_STEP
    assert "deadline" in details["fallback_reason"]
    assert verify_snapshot(backup.path).passed


def test_take_snapshot_without_tls_fails_and_leaves_nothing(node: Node, backup_dir: Path) -> None:
    shutil.rmtree(node.server_dir / "tls")

    with pytest.raises(FileNotFoundError, match="tls"):
        take_snapshot(node.server_dir, node.config_file, backup_dir)

    assert list_backups(backup_dir, kind="k3s") == []
    assert not (backup_dir / "k3s").exists() or list((backup_dir / "k3s").iterdir()) == []


def test_take_snapshot_of_a_damaged_datastore_fails_and_leaves_no_partial(
    node: Node, backup_dir: Path
) -> None:
    node.db.with_name("state.db-wal").unlink(missing_ok=True)
    node.db.write_bytes(b"this is not an SQLite database" * 200)

    with pytest.raises(sqlite3.DatabaseError):
        take_snapshot(node.server_dir, node.config_file, backup_dir)

    assert list((backup_dir / "k3s").iterdir()) == []


@pytest.mark.parametrize(
    ("options", "calls", "phase"),
    [(BackupOptions(pages_per_step=64), 5, "copy"),
     # a one-step copy asks once, before it starts: the next question is while archiving
     (BackupOptions(stepped=False), 1, "archiving")],
)
def test_take_snapshot_asked_to_stop_stops_and_leaves_nothing(
    node: Node, backup_dir: Path, options: BackupOptions, calls: int, phase: str
) -> None:
    asked = [0]

    def should_stop() -> bool:
        asked[0] += 1
        return asked[0] > calls

    with pytest.raises(BackupCancelled, match=phase):
        take_snapshot(node.server_dir, node.config_file, backup_dir,
                      SnapshotOptions(backup=options), should_stop=should_stop)

    assert list((backup_dir / "k3s").iterdir()) == []


def test_take_snapshot_without_config_file_keeps_the_rest(node: Node, backup_dir: Path) -> None:
    node.config_file.unlink()

    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)

    assert "config.yaml" not in backup.manifest.details["contents"]
    assert verify_snapshot(backup.path).passed


def test_verify_snapshot_of_a_good_snapshot_passes_and_removes_its_scratch(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    result = verify_snapshot(backup.path, scratch_parent=scratch)

    assert result.passed and result.reason == "ok"
    assert result.backup_id == backup.manifest.id
    assert result.duration_seconds > 0
    assert list(scratch.iterdir()) == []


def test_verify_snapshot_of_a_truncated_archive_fails_saying_so(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)
    archive = backup.path / ARCHIVE_NAME
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    result = verify_snapshot(backup.path, scratch_parent=scratch)

    assert not result.passed
    assert "archive check failed" in result.reason and "size" in result.reason
    assert list(scratch.iterdir()) == []


def test_verify_snapshot_of_an_archive_with_a_flipped_byte_fails_saying_so(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)
    archive = backup.path / ARCHIVE_NAME
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    result = verify_snapshot(backup.path, scratch_parent=scratch)

    assert not result.passed
    assert "sha256 differs" in result.reason
    assert list(scratch.iterdir()) == []


def test_verify_snapshot_whose_manifest_counts_differ_fails_saying_which(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)
    rewrite_manifest(backup, kine_rows=INITIAL_ROWS + 5)

    result = verify_snapshot(backup.path)

    assert not result.passed
    want = f"kine row count {INITIAL_ROWS + 1} differs from manifest {INITIAL_ROWS + 5}"
    assert result.reason == want

    rewrite_manifest(backup, kine_rows=INITIAL_ROWS + 1, kine_max_revision=7)
    result = verify_snapshot(backup.path)
    assert not result.passed
    assert "highest revision" in result.reason


def test_verify_snapshot_of_a_corrupt_database_with_a_matching_checksum_fails_integrity(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    """A database damaged before it was archived: the checksum matches, SQLite does not."""
    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)
    unpacked = unpack(backup, tmp_path / "unpacked")
    db = unpacked / "state.db"
    page_size = 4096
    with open(db, "r+b") as handle:
        # garbage over a run of pages past the schema: b-tree pages of the table and indexes
        handle.seek(page_size * 40)
        handle.write(b"\xa5" * page_size * 8)
    archive = backup.path / ARCHIVE_NAME
    archive.unlink()
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(unpacked.iterdir()):
            tar.add(path, arcname=path.name)
    manifest_path = backup.path / MANIFEST_NAME
    data = json.loads(manifest_path.read_text())
    data["files"][0].update(size=archive.stat().st_size, sha256=sha256_file(archive))
    manifest_path.write_text(json.dumps(data))

    result = verify_snapshot(backup.path)

    assert not result.passed
    assert result.reason.startswith("integrity_check failed")


def test_verify_snapshot_without_a_manifest_fails(tmp_path: Path) -> None:
    (tmp_path / "k3s-x").mkdir()

    result = verify_snapshot(tmp_path / "k3s-x")

    assert not result.passed and result.reason.startswith("cannot read snapshot")


def test_restore_snapshot_on_a_new_host_gives_back_what_was_saved(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    saved_rows = rows_of(node.db)
    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)
    new_server = tmp_path / "new" / "var" / "lib" / "rancher" / "k3s" / "server"
    new_config = tmp_path / "new" / "etc" / "rancher" / "k3s" / "config.yaml"

    result = restore_snapshot(backup.path, new_server, new_config, is_active=never_active)

    assert rows_of(datastore_path(new_server)) == saved_rows
    for rel, content in node.files.items():
        path = new_config if rel == "config.yaml" else new_server / rel
        assert path.read_bytes() == content, rel
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(datastore_path(new_server).stat().st_mode) == 0o600
    assert result.kept_aside == []
    assert datastore_path(new_server) in result.restored
    assert any("systemctl start k3s" in step for step in result.next_steps)
    assert "check the node" in result.describe()
    assert sorted(p.name for p in new_server.iterdir()) == ["cred", "db", "tls", "token"]


def test_restore_snapshot_over_a_live_datastore_keeps_the_current_one_aside(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    saved_rows = rows_of(node.db)
    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)
    # what happened after the snapshot: more writes (left in the WAL), a new token
    conn = connect(node.db)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("INSERT INTO kine (name, created, deleted, create_revision, prev_revision,"
                 " lease, value, old_value) VALUES ('/registry/after', 1, 0, 0, 0, 0, 'x', NULL)")
    (node.server_dir / "token").write_bytes(b"changed\n")
    conn.close()

    result = restore_snapshot(
        backup.path, node.server_dir, node.config_file, is_active=never_active,
        now=lambda: 1_764_000_000.0,
    )

    assert rows_of(node.db) == saved_rows
    assert sorted(p.name for p in node.db.parent.iterdir()) == ["state.db"]
    assert (node.server_dir / "token").read_bytes() == node.files["token"]
    aside = node.server_dir / "db.before-restore-20251124T160000Z"
    assert aside in result.kept_aside
    assert kine_counts(aside / "state.db")[1] == INITIAL_ROWS + 2
    assert (node.server_dir / "token.before-restore-20251124T160000Z").read_bytes() == b"changed\n"
    assert (node.config_file.parent / "config.yaml.before-restore-20251124T160000Z").exists()
    assert not any(p.name.startswith(".socle-restore") for p in node.server_dir.iterdir())


def test_restore_snapshot_refuses_while_k3s_is_active_and_changes_nothing(
    node: Node, backup_dir: Path, tmp_path: Path
) -> None:
    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)
    systemctl = write_command(tmp_path / "bin", "systemctl", stdout="active\n")
    before = sorted(str(p) for p in node.server_dir.rglob("*"))

    with pytest.raises(K3sActiveError, match="stop it first"):
        restore_snapshot(
            backup.path, node.server_dir, node.config_file,
            is_active=functools.partial(k3s_is_active, systemctl=str(systemctl)),
        )

    assert sorted(str(p) for p in node.server_dir.rglob("*")) == before


def test_restore_snapshot_of_a_damaged_archive_touches_nothing(
    node: Node, backup_dir: Path
) -> None:
    backup = take_snapshot(node.server_dir, node.config_file, backup_dir)
    archive = backup.path / ARCHIVE_NAME
    archive.write_bytes(archive.read_bytes()[:1000])
    before = sorted(str(p) for p in node.server_dir.rglob("*"))

    with pytest.raises(SnapshotInvalidError, match="size"):
        restore_snapshot(backup.path, node.server_dir, node.config_file, is_active=never_active)

    assert sorted(str(p) for p in node.server_dir.rglob("*")) == before


@pytest.mark.parametrize(
    ("stdout", "status", "expected"),
    [("active\n", 0, True), ("activating\n", 3, True), ("inactive\n", 3, False),
     ("failed\n", 3, False)],
)
def test_k3s_is_active_reads_systemctl(
    tmp_path: Path, stdout: str, status: int, expected: bool
) -> None:
    systemctl = write_command(tmp_path, "systemctl", stdout=stdout, status=status)

    assert k3s_is_active(systemctl=str(systemctl)) is expected


def test_k3s_is_active_without_systemd_raises_rather_than_guess(tmp_path: Path) -> None:
    systemctl = write_command(
        tmp_path, "systemctl", stderr="System has not been booted with systemd\n", status=1
    )

    with pytest.raises(K3sStateUnknownError, match="booted with systemd"):
        k3s_is_active(systemctl=str(systemctl))
    with pytest.raises(K3sStateUnknownError):
        k3s_is_active(systemctl=str(tmp_path / "no-such-systemctl"))


def test_k3s_version_reads_the_binary(tmp_path: Path) -> None:
    k3s = write_command(
        tmp_path, "k3s", stdout="k3s version v1.31.4+k3s1 (a1b2c3d4)\ngo version go1.22.9\n"
    )

    assert k3s_version(str(k3s)) == "v1.31.4+k3s1"
    assert k3s_version(str(tmp_path / "missing")) is None


def test_datastore_sizes_reports_the_database_and_its_wal(node: Node) -> None:
    conn = connect(node.db)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("INSERT INTO kine (name, created, deleted, create_revision, prev_revision,"
                 " lease, value, old_value) VALUES ('/registry/x', 1, 0, 0, 0, 0, 'x', NULL)")

    sizes = datastore_sizes(node.server_dir)

    assert sizes == {
        "state.db": node.db.stat().st_size,
        "state.db-wal": node.db.with_name("state.db-wal").stat().st_size,
    }
    assert sizes["state.db-wal"] > 0
    conn.close()
    # the last connection closing folds the WAL in and removes it
    assert datastore_sizes(node.server_dir)["state.db-wal"] == 0



@pytest.mark.parametrize("with_filter", [True, False])
@pytest.mark.parametrize(
    "name", ["/etc/escape", "../escape", "db/../../escape", "link", "fifo"]
)
def test_unpacking_refuses_what_escapes_the_folder_with_or_without_tarfile_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, with_filter: bool
) -> None:
    import contextlib
    import io
    import tarfile

    from socle_agent.sources.k3s import extract_data_only

    if not with_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        if name == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif name == "fifo":
            info.type = tarfile.FIFOTYPE
        tar.addfile(info, io.BytesIO(b""))
    buffer.seek(0)
    dest = tmp_path / "unpacked"
    dest.mkdir()

    with tarfile.open(fileobj=buffer) as tar, contextlib.suppress(tarfile.TarError):
        extract_data_only(tar, dest)

    # Refused, or (an absolute name, with the filter) put inside the folder: never outside.
    assert [p.name for p in tmp_path.iterdir()] == ["unpacked"]
    assert not Path("/etc/escape").exists()
    assert all(p.is_file() and not p.is_symlink() for p in dest.rglob("*") if not p.is_dir())
    if not with_filter:
        assert list(dest.iterdir()) == []
