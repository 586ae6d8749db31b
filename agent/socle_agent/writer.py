"""The one way a backup is written, for every source.

Disk guard first (refused before a byte is written when the estimate does not fit),
then a `<id>.partial` folder (0700), files checksummed while they are written, fsynced,
the manifest, the rename to `<id>` and an fsync of the folder holding it. On any
failure the partial folder is removed; when the failure was a full disk, the bytes
written until then are remembered in the state, so the next attempt's estimate knows
the backup does not fit and is refused before it writes.

Example:

    with BackupWriter(backup_dir, "notes", "daily", state_file=state) as backup:
        backup.guard(config.disk, {"the folder's size": 40_000})
        with backup.file("notes.tar") as out:
            out.write(data)
        done = backup.commit(format="tar", details={"files": 12})
    done.manifest.files[0].sha256
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from socle_agent import catalogue
from socle_agent.closed_files import ClosedFiles
from socle_agent.config import DiskSection
from socle_agent.diskguard import DiskFull, check_fits
from socle_agent.manifest import (
    FileEntry,
    HashingWriter,
    Manifest,
    sha256_file,
    write_manifest,
)
from socle_agent.state import fsync_dir, load_state, update_state

log = logging.getLogger(__name__)
OUT_OF_SPACE_KEY = "out_of_space"
PREVIOUS_BACKUP = "the previous backup"
OUT_OF_SPACE = "the bytes written before the last out-of-space failure"


class BackupWriter:
    """A new backup of `subject` in the catalogue of `kind`; see the module docstring."""

    def __init__(
        self,
        backup_dir: Path,
        kind: str,
        subject: str,
        *,
        started: float | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.backup_dir = backup_dir
        self.kind = kind
        self.subject = subject
        self.started = time.time() if started is None else started
        self.state_file = state_file
        self.root = catalogue.kind_dir(backup_dir, kind)
        self.entries: list[FileEntry] = []
        self.backup_id = ""
        self.partial = self.root
        self.backup: catalogue.Backup | None = None

    def __enter__(self) -> BackupWriter:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.backup_id = catalogue.new_backup_id(self.root, self.subject, self.started)
        self.partial = self.root / f"{self.backup_id}{catalogue.PARTIAL_SUFFIX}"
        self.partial.mkdir(mode=0o700)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if self.backup is not None:
            return
        if exc is not None and _out_of_space(exc):
            self._remember_out_of_space(_folder_bytes(self.partial))
        shutil.rmtree(self.partial, ignore_errors=True)

    def expected_bytes(self, estimates: Mapping[str, int], growth_factor: float) -> tuple[int, str]:
        """The size to expect and on what it is based: the largest of what is known.

        Besides the source's own `estimates`, the previous backup of the subject and the
        bytes written before the last out-of-space failure count.
        """
        known = dict(estimates)
        previous = catalogue.newest(self.backup_dir, self.kind, self.subject)
        if previous is not None:
            known[PREVIOUS_BACKUP] = previous.manifest.size_bytes
        failed = self._out_of_space_record()
        if failed:
            known[OUT_OF_SPACE] = failed
        if not known:
            return 0, "nothing known yet"
        basis, largest = max(known.items(), key=lambda item: item[1])
        return int(largest * growth_factor), f"{basis}, {largest} bytes, times {growth_factor}"

    def guard(self, disk: DiskSection, estimates: Mapping[str, int]) -> int:
        """Refuse (DiskFull) when the expected size would not leave the reserve free.

        Returns the bytes expected.
        """
        expected, basis = self.expected_bytes(estimates, disk.growth_factor)
        verdict = check_fits(self.root, expected, disk)
        if not verdict.fits:
            raise DiskFull(f"{verdict.reason} (estimated from {basis})")
        return expected

    @contextmanager
    def file(self, name: str) -> Iterator[HashingWriter]:
        """A file of the backup, checksummed as it is written and fsynced when closed."""
        path = self.partial / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with HashingWriter(path) as out:
            yield out
        self.entries.append(out.entry(name))

    @contextmanager
    def folder(self, name: str) -> Iterator[Path]:
        """An empty folder a program fills; each file is checksummed once the program
        closes it, while the program goes on, and all are fsynced before `commit`.
        """
        folder = self.partial / name
        folder.mkdir(mode=0o700)
        hasher = _FolderHasher(folder, name)
        hasher.start()
        try:
            yield folder
        except BaseException:
            hasher.stop()
            raise
        self.entries += hasher.finish()

    def commit(self, format: str, details: dict[str, Any], finished: float | None = None
               ) -> catalogue.Backup:
        """Write the manifest, rename the folder to its final name, make it durable."""
        manifest = Manifest(
            id=self.backup_id,
            kind=self.kind,
            subject=self.subject,
            started=self.started,
            finished=time.time() if finished is None else finished,
            format=format,
            files=tuple(self.entries),
            details=details,
        )
        write_manifest(self.partial, manifest)
        fsync_dir(self.partial)
        final = self.root / self.backup_id
        os.rename(self.partial, final)
        fsync_dir(self.root)
        self.backup = catalogue.Backup(final, manifest)
        if self._out_of_space_record():
            self._remember_out_of_space(None)
        return self.backup

    def _key(self) -> str:
        return f"{self.kind}/{self.subject}"

    def _out_of_space_record(self) -> int:
        if self.state_file is None:
            return 0
        try:
            record = load_state(self.state_file).get(OUT_OF_SPACE_KEY, {})
        except (OSError, ValueError):
            return 0
        return int(record.get(self._key(), 0))

    def _remember_out_of_space(self, written: int | None) -> None:
        if self.state_file is None:
            return

        def change(state: dict[str, Any]) -> None:
            records = state.setdefault(OUT_OF_SPACE_KEY, {})
            if written is None:
                records.pop(self._key(), None)
            else:
                records[self._key()] = written

        try:
            update_state(self.state_file, change)
        except OSError as exc:
            # The state may sit on the very disk that is full; the job's own failure is
            # what matters, and it is reported anyway.
            log.warning("cannot record the out-of-space failure: %s", exc)


def _out_of_space(exc: BaseException) -> bool:
    # the agent's own write (OSError) or a program's (pg_dump says so on stderr)
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return os.strerror(errno.ENOSPC) in str(exc)


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue
    return total


class _FolderHasher(threading.Thread):
    """Checksums and fsyncs the files of a folder as they are closed (see `ClosedFiles`)."""

    def __init__(self, folder: Path, prefix: str) -> None:
        super().__init__(name=f"hash-{prefix}", daemon=True)
        self.folder = folder
        self.prefix = prefix
        self.done: dict[str, tuple[FileEntry, int, int]] = {}
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._names: queue.Queue[str] = queue.Queue()
        self._watching = threading.Event()

    def run(self) -> None:
        try:
            with ClosedFiles(self.folder) as closed:
                self._watching.set()
                while not self._halt.is_set():
                    for name in closed.poll(0.2):
                        self._hash(name)
        except OSError as exc:
            # No inotify here: every file is checksummed at the end instead.
            log.debug("cannot watch %s: %s", self.folder, exc)
        except BaseException as exc:
            self.error = exc
        finally:
            self._watching.set()

    def start(self) -> None:
        super().start()
        self._watching.wait()

    def _hash(self, name: str) -> None:
        path = self.folder / name
        with open(path, "rb") as handle:
            # backups are private, whatever umask the program that wrote them had
            os.fchmod(handle.fileno(), 0o600)
            before = os.fstat(handle.fileno())
            os.fsync(handle.fileno())
        entry = FileEntry(f"{self.prefix}/{name}", before.st_size, sha256_file(path))
        self.done[name] = (entry, before.st_size, before.st_mtime_ns)

    def stop(self) -> None:
        """Stop watching (the program failed)."""
        self._halt.set()
        self.join()

    def finish(self) -> list[FileEntry]:
        """Stop watching; checksum what was not yet, or changed since; entries sorted."""
        self.stop()
        if self.error is not None:
            raise self.error
        entries = []
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            name = str(path.relative_to(self.folder))
            stat = path.stat()
            seen = self.done.get(name)
            if seen is None or (seen[1], seen[2]) != (stat.st_size, stat.st_mtime_ns):
                self._hash(name)
            entries.append(self.done[name][0])
        fsync_dir(self.folder)
        return entries
