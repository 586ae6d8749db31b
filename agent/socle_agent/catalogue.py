"""The backup directory is the catalogue: backups are found by reading their manifests.

Layout: `<backup_dir>/<kind>/<id>/manifest.json`. A directory whose name ends in
`.partial` is a backup being written (or left by a crash) and is never listed.

Example:

    for backup in list_backups(Path("/var/backups/socle"), kind="postgres"):
        print(backup.manifest.id, backup.manifest.size_bytes)
"""

from __future__ import annotations

import logging
import shutil
import string
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from socle_agent.base import BackupNotFound
from socle_agent.manifest import MANIFEST_NAME, Manifest, read_manifest, write_manifest
from socle_agent.state import fsync_dir

PARTIAL_SUFFIX = ".partial"
# Characters a file name keeps as they are; every other byte of the UTF-8 name is
# written %XX, so any name the server returns becomes one plain file name.
_PLAIN = frozenset(string.ascii_letters + string.digits + "_-")
log = logging.getLogger(__name__)


def safe_name(name: str) -> str:
    """`name` (a database name, from the server) as one harmless file name, reversibly.

    Letters, digits, `_` and `-` stay; every other byte is `%XX`, so no name can hold a
    path separator, start with a dot or be empty.

    >>> safe_name("app")
    'app'
    >>> safe_name("../../etc")
    '%2E%2E%2F%2E%2E%2Fetc'
    """
    if not name:
        raise ValueError("an empty name cannot be a file name")
    return "".join(
        chr(byte) if chr(byte) in _PLAIN else f"%{byte:02X}" for byte in name.encode("utf-8")
    )


def name_from_safe(encoded: str) -> str:
    """The name `safe_name` encoded.

    >>> name_from_safe("%2E%2E%2Fetc")
    '../etc'
    """
    out = bytearray()
    index = 0
    while index < len(encoded):
        if encoded[index] == "%":
            out.append(int(encoded[index + 1 : index + 3], 16))
            index += 3
        else:
            out.append(ord(encoded[index]))
            index += 1
    return out.decode("utf-8")


def check_backup_id(backup_id: str) -> str:
    """Refuse an id that is not one plain file name (as typed on a command line)."""
    if not backup_id or "/" in backup_id or "\0" in backup_id or backup_id in (".", ".."):
        raise ValueError(f"{backup_id!r} is not a backup id")
    return backup_id


@dataclass(frozen=True)
class Backup:
    """A complete backup: where it is and what its manifest says."""

    path: Path
    manifest: Manifest


def kind_dir(backup_dir: Path, kind: str) -> Path:
    """The directory holding the backups of one kind."""
    return backup_dir / kind


def new_backup_id(root: Path, subject: str, started: float) -> str:
    """A backup id not yet used under `root`: `<subject>-<UTC time>`, suffixed if taken.

    The subject is written with `safe_name`, so the id is one plain file name.

    >>> new_backup_id(Path("/var/backups/socle/postgres"), "app", 0.0)  # doctest: +SKIP
    'app-19700101T000000Z'
    """
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{safe_name(subject)}-{stamp}"
    candidate, n = base, 1
    while (root / candidate).exists() or (root / f"{candidate}{PARTIAL_SUFFIX}").exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def list_backups(
    backup_dir: Path, kind: str | None = None, subject: str | None = None
) -> list[Backup]:
    """Complete backups, oldest first; filtered by kind and subject (e.g. a database).

    A directory with an unreadable manifest is logged and left out, never deleted.
    """
    kinds = [kind] if kind else sorted(p.name for p in _subdirs(backup_dir))
    backups = []
    for name in kinds:
        for path in _subdirs(kind_dir(backup_dir, name)):
            if path.name.endswith(PARTIAL_SUFFIX) or not (path / MANIFEST_NAME).exists():
                continue
            try:
                manifest = read_manifest(path)
            except (OSError, ValueError) as exc:
                log.warning("skipping %s: %s", path, exc)
                continue
            if subject is None or manifest.subject == subject:
                backups.append(Backup(path, manifest))
    backups.sort(key=lambda b: (b.manifest.finished, b.manifest.id))
    return backups


def find_backup(backup_dir: Path, backup_id: str, kind: str | None = None) -> Backup:
    """The backup with id `backup_id`; raises BackupNotFound (a LookupError) when there is
    none, or when the id, as typed by someone, could not be a backup's folder name."""
    try:
        check_backup_id(backup_id)
    except ValueError as exc:
        raise BackupNotFound(str(exc)) from exc
    for backup in list_backups(backup_dir, kind):
        if backup.manifest.id == backup_id:
            return backup
    raise BackupNotFound(f"no backup with id {backup_id!r} in {backup_dir}")


def newest(backup_dir: Path, kind: str, subject: str | None = None) -> Backup | None:
    """The most recent complete backup of a kind (and subject), or None."""
    backups = list_backups(backup_dir, kind, subject)
    return backups[-1] if backups else None


def mark_verified(backup: Backup, when: float | None = None) -> Backup:
    """Record in the manifest that the backup passed a drill; returns the updated backup.

    Retention never deletes the newest verified backup of a subject.
    """
    details = {**backup.manifest.details, "verified": time.time() if when is None else when}
    manifest = replace(backup.manifest, details=details)
    write_manifest(backup.path, manifest)
    return Backup(backup.path, manifest)


def remove_backup(backup: Backup) -> None:
    """Delete a backup: its manifest first, so a crash midway leaves no listed half."""
    (backup.path / MANIFEST_NAME).unlink(missing_ok=True)
    shutil.rmtree(backup.path)
    fsync_dir(backup.path.parent)


def remove_orphans(backup_dir: Path, kind: str) -> list[Path]:
    """Delete folders of a kind that are neither partial nor complete (no manifest).

    `remove_backup` deletes the manifest first: a crash after that leaves such a folder,
    which nothing lists. Call only with the kind's lock held.
    """
    removed = []
    for path in _subdirs(kind_dir(backup_dir, kind)):
        if not path.name.endswith(PARTIAL_SUFFIX) and not (path / MANIFEST_NAME).exists():
            log.warning("removing %s: a folder without a manifest (an interrupted delete)", path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_partials(backup_dir: Path, kind: str) -> list[Path]:
    """Delete leftover `.partial` directories of a kind; call only with the kind's lock held."""
    removed = []
    for path in _subdirs(kind_dir(backup_dir, kind)):
        if path.name.endswith(PARTIAL_SUFFIX):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []
