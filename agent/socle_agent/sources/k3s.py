"""Snapshots, drills and restores of k3s's SQLite datastore and the server files it needs.

k3s with SQLite has no snapshot command of its own. A snapshot here is one compressed
archive holding a consistent copy of `server/db/state.db` (taken with SQLite's online
backup API while k3s runs, see `sqlite_backup`) and what a restore on a new host needs
besides: the server `token`, `server/tls`, `server/cred` and the k3s `config.yaml`.
Without tls and cred a new host makes new certificates and the restored data is useless.

Snapshots live in the catalogue like every backup, `<backup_dir>/k3s/<id>/`:

    snapshot.tar.gz   state.db, token, tls/..., cred/..., config.yaml (all 0600)
    manifest.json     sha256 and size, k3s version, kine row count and highest
                      revision, sizes of the live state.db and its WAL, copy method

The agent's jobs and commands over these functions:

    socle-agent snapshot k3s              # job k3s_snapshot: disk guard, snapshot, retention
    socle-agent drill k3s                 # job k3s_drill: verify the newest snapshot
    socle-agent restore k3s --snapshot ID # only with k3s stopped

Example of the functions themselves:

    backup = take_snapshot(Path("/var/lib/rancher/k3s/server"),
                           Path("/etc/rancher/k3s/config.yaml"),
                           Path("/var/backups/socle"))
    result = verify_snapshot(backup.path)     # the drill: result.passed, result.reason
    restore_snapshot(backup.path, server_dir, config_file)  # only with k3s stopped
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import logging
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

from socle_agent import catalogue
from socle_agent.base import (
    DrillFailed,
    DrillRecord,
    JobAborted,
    JobContext,
    JobOutcome,
    RestoreError,
    RestoreRefused,
)
from socle_agent.catalogue import PARTIAL_SUFFIX, Backup, kind_dir
from socle_agent.config import Config
from socle_agent.manifest import HashingWriter, Manifest, read_manifest, verify_files
from socle_agent.pruning import prune_kind
from socle_agent.source import Action, Report, Source
from socle_agent.sources.sqlite_backup import (
    BackupCancelled,
    BackupOptions,
    backup_database,
    integrity_problems,
)
from socle_agent.state import fsync_dir
from socle_agent.writer import BackupWriter

KIND = "k3s"
SUBJECT = "k3s"
ARCHIVE_NAME = "snapshot.tar.gz"
ARCHIVE_FORMAT = "tar+gzip"
DB_MEMBER = "state.db"
TOKEN_MEMBER = "token"
CONFIG_MEMBER = "config.yaml"
# What a restore on a new host cannot do without; config.yaml is optional because k3s
# can be configured by flags alone.
REQUIRED_MEMBERS = (DB_MEMBER, TOKEN_MEMBER, "tls", "cred")
SERVER_DIRS = ("tls", "cred")
DATASTORE_FILES = ("state.db", "state.db-wal")
# `systemctl is-active` states in which k3s may be writing to its datastore
RUNNING_STATES = frozenset({"active", "activating", "deactivating", "reloading", "refreshing"})
STOPPED_STATES = frozenset({"inactive", "failed"})
# where a drill unpacks a snapshot: in the backup directory (the filesystem the disk guard
# watches), named like a partial backup so a drill killed midway is tidied by the next job
DRILL_SCRATCH = "drill-scratch" + PARTIAL_SUFFIX
log = logging.getLogger(__name__)


class K3sActiveError(RuntimeError):
    """k3s is running: its datastore must not be replaced under it."""


class K3sStateUnknownError(RuntimeError):
    """Whether k3s runs could not be told (no systemctl, no systemd)."""


class SnapshotInvalidError(RuntimeError):
    """A snapshot failed its checks; the message says which."""


@dataclass(frozen=True)
class SnapshotOptions:
    """How to take a snapshot: the SQLite copy, gzip level, k3s version if known."""

    backup: BackupOptions = field(default_factory=BackupOptions)
    compresslevel: int = 6
    k3s_version: str | None = None


@dataclass(frozen=True)
class DrillResult:
    """The outcome of a k3s drill: passed or not, why, and how long it took."""

    backup_id: str
    passed: bool
    reason: str
    duration_seconds: float


@dataclass(frozen=True)
class RestoreResult:
    """What a restore put back, what it kept aside, and what the operator does next."""

    backup_id: str
    restored: list[Path]
    kept_aside: list[Path]
    next_steps: list[str]

    def describe(self) -> str:
        """The result as text for the operator."""
        lines = [f"restored k3s snapshot {self.backup_id}:"]
        lines += [f"  {path}" for path in self.restored]
        if self.kept_aside:
            lines.append("kept aside (not deleted):")
            lines += [f"  {path}" for path in self.kept_aside]
        lines.append("next steps:")
        lines += [f"  {n}. {step}" for n, step in enumerate(self.next_steps, start=1)]
        return "\n".join(lines)


def datastore_path(server_dir: Path) -> Path:
    """Where k3s keeps its SQLite datastore under `server_dir`."""
    return server_dir / "db" / "state.db"


def datastore_sizes(server_dir: Path) -> dict[str, int]:
    """Sizes in bytes of the live datastore and its WAL, keyed by file name.

    kine never vacuums, so both grow; the keys are the `file` label of
    `socle_k3s_datastore_bytes`. A missing WAL counts as 0; a missing state.db raises
    FileNotFoundError.

    Example: `datastore_sizes(server_dir)` -> `{"state.db": 52428800, "state.db-wal": 4120032}`
    """
    db = datastore_path(server_dir)
    sizes = {"state.db": db.stat().st_size}
    wal = db.with_name("state.db-wal")
    try:
        sizes["state.db-wal"] = wal.stat().st_size
    except FileNotFoundError:
        sizes["state.db-wal"] = 0
    return sizes


def k3s_version(k3s: str = "k3s") -> str | None:
    """The installed k3s version (e.g. "v1.31.4+k3s1"), or None when it cannot be told."""
    try:
        done = subprocess.run(
            [k3s, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    words = done.stdout.split()
    # first line reads: "k3s version v1.31.4+k3s1 (a1b2c3d4)"
    if len(words) >= 3 and words[0] == "k3s" and words[1] == "version":
        return words[2]
    return None


def k3s_is_active(unit: str = "k3s", systemctl: str = "systemctl") -> bool:
    """Whether the k3s unit is running (or starting or stopping), per `systemctl is-active`.

    Raises K3sStateUnknownError when systemctl is missing or answers with no known state,
    so a restore never goes ahead on a guess.
    """
    try:
        done = subprocess.run(
            [systemctl, "is-active", unit], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise K3sStateUnknownError(f"cannot ask systemd whether {unit} runs: {exc}") from exc
    state = done.stdout.strip()
    if state in RUNNING_STATES:
        return True
    if state in STOPPED_STATES:
        return False
    detail = done.stderr.strip() or f"exit status {done.returncode}"
    raise K3sStateUnknownError(
        f"cannot tell whether {unit} runs: systemctl said {state!r} ({detail})"
    )


def take_snapshot(
    server_dir: Path,
    config_file: Path,
    backup_dir: Path,
    options: SnapshotOptions | None = None,
    now: Callable[[], float] = time.time,
    should_stop: Callable[[], bool] = lambda: False,
    guard: Callable[[BackupWriter], object] | None = None,
) -> Backup:
    """Snapshot k3s's datastore and server files into the catalogue under `backup_dir`.

    The database is copied with the online backup API, checked with
    `PRAGMA integrity_check`, archived with token, tls, cred and config into one gzip'd
    tar written under a `.partial` directory, hashed while written, fsynced, and the
    directory renamed only when the manifest is in it. Nothing is left behind on failure.
    Raises SnapshotInvalidError when the copy fails its integrity check,
    FileNotFoundError when the datastore or a required server file is missing, and
    BackupCancelled when `should_stop()` turns true during the copy or the archiving.
    `guard`, given the writer before anything is written, may refuse (the disk guard).
    """
    opts = options or SnapshotOptions()
    started = now()
    db = datastore_path(server_dir)
    sizes = datastore_sizes(server_dir)
    for name in (TOKEN_MEMBER, *SERVER_DIRS):
        if not (server_dir / name).exists():
            raise FileNotFoundError(f"{server_dir / name} is missing; a restore would need it")
    with BackupWriter(backup_dir, KIND, SUBJECT, started=started) as writer:
        if guard is not None:
            guard(writer)
        # the copy gets a directory of its own: opening it leaves -wal and -shm files beside it
        work = writer.partial / ".work"
        work.mkdir(mode=0o700)
        copy = work / DB_MEMBER
        outcome = backup_database(db, copy, opts.backup, should_stop=should_stop)
        problems = integrity_problems(copy)
        if problems:
            raise SnapshotInvalidError(f"copy of {db} fails integrity_check: {problems[:3]}")
        rows, max_revision = kine_counts(copy)
        copy_bytes = copy.stat().st_size
        members = _members(copy, server_dir, config_file)
        with writer.file(ARCHIVE_NAME) as out:
            _write_archive(out, members, opts.compresslevel, should_stop)
        shutil.rmtree(work)
        return writer.commit(
            format=ARCHIVE_FORMAT,
            finished=now(),
            details={
                "k3s_version": opts.k3s_version,
                "kine_rows": rows,
                "kine_max_revision": max_revision,
                "datastore_bytes": sizes,
                "snapshot_db_bytes": copy_bytes,
                "integrity_check": "ok",
                "method": outcome.method,
                "backup_steps": outcome.steps,
                "backup_restarts": outcome.restarts,
                "fallback_reason": outcome.fallback_reason,
                "backup_seconds": round(outcome.duration_seconds, 3),
                "contents": sorted({name.split("/", 1)[0] for name, _ in members}),
                "server_dir": str(server_dir),
                "config_file": str(config_file),
            },
        )


def kine_counts(db: Path) -> tuple[int, int]:
    """Row count and highest revision (max id) of kine's table in `db`."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows, max_id = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM kine").fetchone()
    finally:
        conn.close()
    return int(rows), int(max_id)


def verify_snapshot(backup: Path, scratch_parent: Path | None = None) -> DrillResult:
    """The k3s drill: check the snapshot in directory `backup` can be restored as recorded.

    The archive's size and sha256 are checked against the manifest, it is unpacked to a
    scratch directory (under `scratch_parent`, default the system's temporary dir), the
    database opened, `PRAGMA integrity_check` run, and the row count and highest
    revision compared with the manifest. The scratch directory is removed afterwards,
    also on failure. Never raises for a bad snapshot: `reason` says what failed.
    """
    started = time.monotonic()
    backup_id = backup.name
    try:
        manifest = read_manifest(backup)
        backup_id = manifest.id
        with _scratch_dir(scratch_parent, "socle-k3s-drill-") as scratch:
            _unpack_checked(backup, manifest, scratch)
            reason = "ok"
            passed = True
    except SnapshotInvalidError as exc:
        passed, reason = False, str(exc)
    except (OSError, ValueError) as exc:
        passed, reason = False, f"cannot read snapshot: {exc}"
    return DrillResult(backup_id, passed, reason, time.monotonic() - started)


def restore_snapshot(
    backup: Path,
    server_dir: Path,
    config_file: Path,
    is_active: Callable[[], bool] = k3s_is_active,
    now: Callable[[], float] = time.time,
) -> RestoreResult:
    """Put the snapshot in directory `backup` back into `server_dir` and `config_file`.

    Refuses (K3sActiveError) while `is_active()` says k3s runs. The snapshot is checked
    and unpacked beside the server files first; only then are the current `db/`, token,
    tls, cred and config renamed aside with a timestamp (never deleted) and the saved
    ones moved in. Returns what was done and the steps that remain.
    Raises SnapshotInvalidError when the snapshot fails its checks (nothing is touched).
    """
    if is_active():
        raise K3sActiveError("k3s is active: stop it first (systemctl stop k3s), then restore")
    manifest = read_manifest(backup)
    stamp = datetime.fromtimestamp(now(), UTC).strftime("%Y%m%dT%H%M%SZ")
    server_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # unpack on the same filesystem as the server files so that moving them in is a rename
    staging = server_dir / f".socle-restore-{stamp}"
    staging.mkdir(mode=0o700)
    try:
        _unpack_checked(backup, manifest, staging)
        kept_aside = _move_aside(server_dir, config_file, stamp)
        restored = _move_in(staging, server_dir, config_file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    next_steps = [
        "start k3s: systemctl start k3s",
        "check the node: k3s kubectl wait --for=condition=Ready node --all --timeout=300s",
        "check the workloads: k3s kubectl get pods -A",
    ]
    if kept_aside:
        next_steps.append(
            "once the node is healthy, remove what was kept aside: "
            + " ".join(str(p) for p in kept_aside)
        )
    return RestoreResult(manifest.id, restored, kept_aside, next_steps)


def _members(copy: Path, server_dir: Path, config_file: Path) -> list[tuple[str, Path]]:
    """(name in archive, file on disk) for every regular file of the snapshot."""
    members = [(DB_MEMBER, copy), (TOKEN_MEMBER, server_dir / TOKEN_MEMBER)]
    for top in SERVER_DIRS:
        root = server_dir / top
        # symlinks and special files are left out: a restore must not follow links
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                members.append((f"{top}/{path.relative_to(root).as_posix()}", path))
    if config_file.is_file():
        members.append((CONFIG_MEMBER, config_file))
    return members


def _write_archive(
    out: HashingWriter,
    members: list[tuple[str, Path]],
    level: int,
    should_stop: Callable[[], bool],
) -> None:
    # streaming: the archive is written front to back, never seeked, so hashing as it is
    # written gives the checksum of the file on disk
    with (
        gzip.GzipFile(
            fileobj=_Sink(out, should_stop), mode="wb", compresslevel=level, mtime=0
        ) as gz,
        tarfile.open(fileobj=gz, mode="w|") as tar,
    ):
        dirs_done: set[str] = set()
        for name, path in members:
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                dirname = "/".join(parts[:depth])
                if dirname not in dirs_done:
                    tar.addfile(_info(dirname, tarfile.DIRTYPE, 0o700, 0, time.time()))
                    dirs_done.add(dirname)
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                tar.addfile(_info(name, tarfile.REGTYPE, 0o600, stat.st_size, stat.st_mtime),
                            handle)


class _Sink:
    """The file interface gzip needs over a HashingWriter (which fsyncs when closed)."""

    def __init__(self, out: HashingWriter, should_stop: Callable[[], bool]) -> None:
        self._out = out
        self._should_stop = should_stop

    def write(self, data: bytes) -> int:
        # gzip hands over compressed blocks as it goes, so this is asked often enough
        if self._should_stop():
            raise BackupCancelled("archiving stopped")
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the writer is unbuffered and fsyncs on close."""


def _info(name: str, kind: bytes, mode: int, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


@contextlib.contextmanager
def _scratch_dir(parent: Path | None, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def extract_data_only(tar: tarfile.TarFile, dest: Path) -> None:
    """Unpack ``tar`` into ``dest``, refusing what tarfile's "data" filter refuses.

    Absolute names, names escaping ``dest``, links and devices raise ``TarError``. Pythons
    before 3.11.4 (Debian 12 has 3.11.2) lack the filter: the same refusals are made here.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = os.path.realpath(dest)
    members = tar.getmembers()
    for member in members:
        target = os.path.realpath(os.path.join(root, member.name))
        inside = target == root or target.startswith(root + os.sep)
        if os.path.isabs(member.name) or not inside or not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"refused archive member {member.name!r}")
        member.mode &= 0o777  # no set-id or sticky bits, as the filter does
    tar.extractall(dest, members=members)


def _unpack_checked(backup: Path, manifest: Manifest, dest: Path) -> None:
    """Check the archive against the manifest, unpack it into `dest`, check the database.

    Raises SnapshotInvalidError naming the first check that failed.
    """
    if manifest.kind != KIND:
        raise SnapshotInvalidError(f"{manifest.id} is a {manifest.kind} backup, not {KIND}")
    problems = verify_files(backup, manifest)
    if problems:
        raise SnapshotInvalidError("archive check failed: " + "; ".join(problems))
    archive = backup / manifest.files[0].name
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            extract_data_only(tar, dest)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise SnapshotInvalidError(f"archive cannot be unpacked: {exc}") from exc
    missing = [name for name in REQUIRED_MEMBERS if not (dest / name).exists()]
    if missing:
        raise SnapshotInvalidError(f"archive lacks {', '.join(missing)}")
    db = dest / DB_MEMBER
    problems = integrity_problems(db)
    if problems:
        raise SnapshotInvalidError(f"integrity_check failed: {'; '.join(problems[:5])}")
    try:
        rows, max_revision = kine_counts(db)
    except sqlite3.Error as exc:
        raise SnapshotInvalidError(f"kine table cannot be read: {exc}") from exc
    want_rows = manifest.details.get("kine_rows")
    want_max = manifest.details.get("kine_max_revision")
    if rows != want_rows:
        raise SnapshotInvalidError(f"kine row count {rows} differs from manifest {want_rows}")
    if max_revision != want_max:
        raise SnapshotInvalidError(
            f"highest revision {max_revision} differs from manifest {want_max}"
        )


def _move_aside(server_dir: Path, config_file: Path, stamp: str) -> list[Path]:
    """Rename the current datastore and server files with a timestamp; return the new names."""
    kept = []
    # the whole db/ directory goes, so no stale state.db-wal or -shm meets the restored file
    for name in ("db", TOKEN_MEMBER, *SERVER_DIRS):
        current = server_dir / name
        if current.exists() or current.is_symlink():
            aside = server_dir / f"{name}.before-restore-{stamp}"
            os.rename(current, aside)
            kept.append(aside)
    if config_file.exists() or config_file.is_symlink():
        aside = config_file.with_name(f"{config_file.name}.before-restore-{stamp}")
        os.rename(config_file, aside)
        kept.append(aside)
        fsync_dir(config_file.parent)
    fsync_dir(server_dir)
    return kept


def _move_in(staging: Path, server_dir: Path, config_file: Path) -> list[Path]:
    """Move the unpacked files into place with root-only modes; return where they went."""
    db_dir = server_dir / "db"
    db_dir.mkdir(mode=0o700)
    placed = [(staging / DB_MEMBER, db_dir / DB_MEMBER)]
    placed += [(staging / name, server_dir / name) for name in (TOKEN_MEMBER, *SERVER_DIRS)]
    restored = []
    for src, dst in placed:
        _restrict(src)
        os.rename(src, dst)
        restored.append(dst)
    fsync_dir(db_dir)
    fsync_dir(server_dir)
    saved_config = staging / CONFIG_MEMBER
    if saved_config.exists():
        config_file.parent.mkdir(parents=True, exist_ok=True)
        # /etc may be another filesystem than the server dir: copy, then rename in place
        tmp = config_file.with_name(f".{config_file.name}.restoring")
        shutil.copyfile(saved_config, tmp)
        os.chmod(tmp, 0o600)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, config_file)
        fsync_dir(config_file.parent)
        restored.append(config_file)
    return restored


def _restrict(path: Path) -> None:
    if path.is_dir():
        os.chmod(path, 0o700)
        for child in path.rglob("*"):
            os.chmod(child, 0o700 if child.is_dir() else 0o600)
    else:
        os.chmod(path, 0o600)



def expected_snapshot_bytes(config: Config) -> int:
    """Bytes a snapshot needs in the backup directory besides its archive, for the guard.

    While it is taken, the uncompressed copy of the database (at most the live state.db
    and its WAL) sits beside the archive being written; the archive is expected to be
    the size of the previous one, or of the live datastore when there is none.

    Example: a 400 MB state.db, a 20 MB WAL and a previous archive of 60 MB give 480 MB
    (times the growth factor, applied by the writer's guard).
    """
    sizes = datastore_sizes(config.k3s.server_dir)
    live = sizes["state.db"] + sizes["state.db-wal"]
    previous = catalogue.newest(config.agent.backup_dir, KIND)
    archive = previous.manifest.size_bytes if previous is not None else live
    return live + archive


def snapshot_job(context: JobContext) -> JobOutcome:
    """Job k3s_snapshot: check the disk, snapshot the datastore and server files, prune."""
    config = context.config
    section = config.k3s
    db = datastore_path(section.server_dir)
    if not db.is_file():
        raise FileNotFoundError(f"no k3s datastore at {db} (is k3s with SQLite installed here?)")
    catalogue.remove_partials(config.agent.backup_dir, KIND)
    expected = {"the live datastore beside its archive": expected_snapshot_bytes(config)}
    context.check("starting the snapshot")
    options = SnapshotOptions(k3s_version=k3s_version())

    def should_stop() -> bool:
        context.progress.beat()
        return context.cancel.is_set() or context.remaining() <= 0

    try:
        backup = take_snapshot(section.server_dir, section.config_file, config.agent.backup_dir,
                               options, should_stop=should_stop,
                               guard=lambda writer: writer.guard(config.disk, expected))
    except BackupCancelled as exc:
        # take_snapshot has removed its partial directory already
        context.check("snapshotting the datastore")  # raises DeadlineExceeded if that was it
        raise JobAborted(f"the agent is stopping: {exc}") from exc
    # retention only after a snapshot that succeeded, as for the dumps
    prune_kind(config, KIND)
    manifest = backup.manifest
    details = manifest.details
    return JobOutcome(
        size_bytes=manifest.size_bytes,
        summary=(
            f"{manifest.id} ({manifest.size_bytes} bytes, {details['kine_rows']} rows up to "
            f"revision {details['kine_max_revision']}, {details['method']} copy)"
        ),
    )


def drill_job(context: JobContext) -> JobOutcome:
    """Job k3s_drill: verify the newest snapshot (or `options["snapshot"]`), timed.

    A snapshot that passes is marked verified, so retention keeps it; one that fails
    fails the job with the reason, which goes to the state, the metrics and mail.
    """
    config = context.config
    started = time.monotonic()
    wanted = context.options.get("snapshot")
    backup: Backup | None
    if wanted:
        try:
            backup = catalogue.find_backup(config.agent.backup_dir, wanted, KIND)
        except LookupError as exc:
            raise DrillFailed(KIND, str(exc), time.monotonic() - started) from exc
    else:
        backup = catalogue.newest(config.agent.backup_dir, KIND)
    if backup is None:
        raise DrillFailed(KIND, "no snapshot to drill", time.monotonic() - started)
    scratch = kind_dir(config.agent.backup_dir, KIND) / DRILL_SCRATCH
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    try:
        result = verify_snapshot(backup.path, scratch_parent=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    duration = time.monotonic() - started
    if not result.passed:
        raise DrillFailed(KIND, f"{result.backup_id}: {result.reason}", duration)
    catalogue.mark_verified(backup)
    target = config.drill.rto_seconds.get(KIND)
    slow = target is not None and duration > target
    note = f"over the RTO target of {target:.0f} s" if slow else ""
    summary = f"{result.backup_id} passed in {duration:.1f} s" + (f", {note}" if note else "")
    return JobOutcome(summary=summary, drill=DrillRecord(KIND, True, duration, note))


def _snapshot_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshot", metavar="ID", help="this snapshot rather than the newest")


class K3sSource(Source):
    """k3s's SQLite datastore and the server files a restore needs."""

    kind = KIND

    def actions(self) -> dict[str, Action]:
        """snapshot (copy, check, archive) and drill (unpack and check the newest)."""
        return {
            "snapshot": Action(snapshot_job, "snapshot k3s's datastore and server files"),
            "drill": Action(drill_job, "check that the newest snapshot restores",
                            _snapshot_argument),
        }

    def add_restore_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Options of `socle-agent restore k3s`."""
        parser.add_argument(
            "--snapshot", required=True, metavar="ID", help="snapshot id (see `list --kind k3s`)"
        )

    def restore(self, context: JobContext, args: argparse.Namespace, report: Report) -> str:
        """Put a snapshot back with k3s stopped; the closing text lists what remains to do."""
        config = context.config
        section = config.k3s
        backup = catalogue.find_backup(config.agent.backup_dir, args.snapshot, KIND)
        report(f"checking {backup.manifest.id} and restoring it into {section.server_dir}")
        try:
            result = restore_snapshot(backup.path, section.server_dir, section.config_file)
        except (K3sActiveError, K3sStateUnknownError) as exc:
            raise RestoreRefused(f"refusing to restore: {exc}") from exc
        except SnapshotInvalidError as exc:
            raise RestoreRefused(f"refusing to restore a damaged snapshot: {exc}") from exc
        except OSError as exc:
            raise RestoreError(f"restore failed: {exc}") from exc
        return result.describe()

    def collect(self, config: Config) -> Iterator[Metric]:
        """`socle_k3s_datastore_bytes{file}`: none where this node has no datastore."""
        family = GaugeMetricFamily(
            "socle_k3s_datastore_bytes", "Size of k3s's SQLite datastore files.", labels=["file"]
        )
        try:
            sizes = datastore_sizes(config.k3s.server_dir)
        except FileNotFoundError:
            # no k3s on this node: no series rather than a made-up zero
            sizes = {}
        except OSError as exc:
            log.warning("metrics: cannot measure k3s's datastore: %s", exc)
            sizes = {}
        for name, size in sorted(sizes.items()):
            family.add_metric([name], size)
        yield family


SOURCE = K3sSource()
