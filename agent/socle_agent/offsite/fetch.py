"""A backup fetched from off-site into a scratch catalogue, and checked there.

The scratch folder sits in the backup directory (the filesystem the disk guard watches),
`<backup_dir>/offsite/fetch-<kind>-<id>-<random>.partial/`, root only, and holds a
catalogue of one backup, `<folder>/<kind>/<id>/`, so the source's own restore or drill
reads it exactly as a local backup. Before a byte of data is fetched, the backup's
manifest is read from the snapshot, so a backup that would not fit is refused; after,
the folder is checked against that manifest (the same id and kind, every file's size
and sha256). The folder is removed when done; one left by a killed process (its lock
free) is removed by the next off-site job.

Example:

    with fetched(context, restic, "postgres", "app-20261126T023000Z", print) as folder:
        restore from `folder` as from a backup directory
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from socle_agent import catalogue
from socle_agent.base import BackupNotFound, JobContext, RestoreRefused
from socle_agent.diskguard import check_fits
from socle_agent.manifest import MANIFEST_NAME, Manifest, verify_files
from socle_agent.offsite.restic import Restic, Snapshot
from socle_agent.offsite.settings import KIND
from socle_agent.state import fsync_dir

log = logging.getLogger(__name__)
LOCK_NAME = ".fetching"


def scratch_root(backup_dir: Path) -> Path:
    """Where fetched backups are unpacked: the `offsite` folder of the backup directory."""
    return catalogue.kind_dir(backup_dir, KIND)


def remove_abandoned(backup_dir: Path) -> list[Path]:
    """Remove scratch folders whose fetching process is gone (its lock is free)."""
    removed = []
    root = scratch_root(backup_dir)
    for folder in sorted(root.glob(f"fetch-*{catalogue.PARTIAL_SUFFIX}")) if root.is_dir() else []:
        try:
            handle = open(folder / LOCK_NAME, "a")  # noqa: SIM115 - closed below
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # still being fetched into
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def find_copy(context: JobContext, restic: Restic, kind: str, backup_id: str) -> Snapshot:
    """The snapshot holding backup `backup_id` of `kind`; BackupNotFound when none."""
    try:
        catalogue.check_backup_id(backup_id)
    except ValueError as exc:
        raise BackupNotFound(str(exc)) from None
    found = restic.snapshots(context, {"kind": kind, "backup": backup_id})
    if not found:
        raise BackupNotFound(f"no {kind} backup with id {backup_id!r} off-site "
                             f"(host {restic.host})")
    return found[-1]


def folder_in(snapshot: Snapshot) -> str:
    """The backup folder a snapshot holds, as an absolute path without `..`."""
    if len(snapshot.paths) != 1:
        raise RestoreRefused(f"snapshot {snapshot.id[:8]} holds {len(snapshot.paths)} paths, "
                             "not one backup folder")
    path = snapshot.paths[0]
    if not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
        raise RestoreRefused(f"snapshot {snapshot.id[:8]} holds {path!r}, not a backup folder")
    return path


def read_manifest_of(context: JobContext, restic: Restic, snapshot: Snapshot, kind: str,
                     backup_id: str) -> Manifest:
    """The manifest inside the snapshot, checked to be that of the backup asked for."""
    folder = folder_in(snapshot)
    try:
        manifest = Manifest.from_json(restic.dump(context, snapshot.id, f"{folder}/{MANIFEST_NAME}")
                                      .decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RestoreRefused(f"the off-site copy of {backup_id} has no readable manifest: "
                             f"{exc}") from None
    if (manifest.kind, manifest.id) != (kind, backup_id):
        raise RestoreRefused(f"the off-site copy tagged {kind}/{backup_id} holds the manifest "
                             f"of {manifest.kind}/{manifest.id}")
    return manifest


@contextlib.contextmanager
def fetched(context: JobContext, restic: Restic, kind: str, backup_id: str,
            report: Callable[[str], None]) -> Iterator[Path]:
    """Fetch and check one backup (see the module docstring); yields the scratch catalogue."""
    config = context.config
    context.check(f"finding {kind}/{backup_id} off-site")
    snapshot = find_copy(context, restic, kind, backup_id)
    manifest = read_manifest_of(context, restic, snapshot, kind, backup_id)
    root = scratch_root(config.agent.backup_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    verdict = check_fits(root, int(manifest.size_bytes * config.disk.growth_factor), config.disk)
    if not verdict.fits:
        raise RestoreRefused(f"{kind}/{backup_id} cannot be fetched: {verdict.reason}")
    folder = Path(tempfile.mkdtemp(prefix=f"fetch-{kind}-{backup_id}-",
                                   suffix=catalogue.PARTIAL_SUFFIX, dir=root))
    try:
        with open(folder / LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield _fetch_into(context, restic, snapshot, manifest, folder, report)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fetch_into(context: JobContext, restic: Restic, snapshot: Snapshot, manifest: Manifest,
                folder: Path, report: Callable[[str], None]) -> Path:
    report(f"fetching {manifest.kind}/{manifest.id} ({manifest.size_bytes} bytes) from "
           f"off-site snapshot {snapshot.id[:8]}")
    tree = folder / "tree"
    tree.mkdir(mode=0o700)
    restic.restore(context, snapshot.id, tree, restic.settings.transfer_timeout_seconds,
                   on_line=lambda line: report(f"  {line}"))
    restored = tree / folder_in(snapshot).lstrip("/")
    if restored.is_symlink() or not restored.is_dir():
        raise RestoreRefused(f"the off-site copy of {manifest.id} holds no folder at "
                             f"{folder_in(snapshot)}")
    catalogue_dir = folder / "catalogue"
    kind_dir = catalogue.kind_dir(catalogue_dir, manifest.kind)
    kind_dir.mkdir(parents=True, mode=0o700)
    os.rename(restored, kind_dir / manifest.id)
    fsync_dir(kind_dir)
    shutil.rmtree(tree, ignore_errors=True)
    report(f"checking {manifest.id} against its manifest")
    problems = verify_files(kind_dir / manifest.id, manifest)
    if problems:
        raise RestoreRefused(f"the off-site copy of {manifest.id} does not match its "
                             "manifest: " + "; ".join(problems))
    return catalogue_dir
