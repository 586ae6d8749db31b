"""The manifest written beside each backup, and the sha256 helpers that fill it.

A backup is a directory `<backup_dir>/<kind>/<id>/` holding its files and
`manifest.json`. The manifest is written last, before the directory is renamed from
its `.partial` name, so a backup with a manifest is complete.

Example:

    manifest = read_manifest(Path("/var/backups/socle/postgres/app-20261126T020000Z"))
    manifest.files[0].sha256 == sha256_file(manifest_path.parent / manifest.files[0].name)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from socle_agent.state import write_atomically

MANIFEST_NAME = "manifest.json"
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One file of a backup, relative to the backup directory."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a backup holds and how to check it.

    `details` carries what one kind knows that another does not (for PostgreSQL the
    server and pg_dump versions and the row counts per table; for k3s its version and
    highest revision).
    """

    id: str
    kind: str
    subject: str
    started: float
    finished: float
    format: str
    files: tuple[FileEntry, ...]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        """Total size of the backup's files."""
        return sum(entry.size for entry in self.files)

    def to_json(self) -> str:
        """The manifest as pretty JSON."""
        data = asdict(self)
        data["size_bytes"] = self.size_bytes
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Read a manifest; raises ValueError when a field is missing or wrong."""
        try:
            data = json.loads(text)
            files = tuple(FileEntry(**entry) for entry in data["files"])
            return cls(
                id=str(data["id"]),
                kind=str(data["kind"]),
                subject=str(data["subject"]),
                started=float(data["started"]),
                finished=float(data["finished"]),
                format=str(data["format"]),
                files=files,
                details=dict(data.get("details", {})),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a valid manifest: {exc}") from exc


def write_manifest(backup_dir: Path, manifest: Manifest) -> None:
    """Write `manifest.json` into `backup_dir` atomically (mode 0600)."""
    write_atomically(backup_dir / MANIFEST_NAME, manifest.to_json().encode("utf-8"))


def read_manifest(backup_dir: Path) -> Manifest:
    """Read `manifest.json` of the backup in `backup_dir`."""
    return Manifest.from_json((backup_dir / MANIFEST_NAME).read_text(encoding="utf-8"))


class HashingWriter:
    """Write a stream to a file while counting and hashing it; fsync on `close`.

    Example:

        with HashingWriter(path) as out:
            out.write(chunk)
        out.entry("dump")  # FileEntry with size and sha256
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._hash = hashlib.sha256()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: BinaryIO = os.fdopen(fd, "wb", buffering=0)

    def write(self, data: bytes | memoryview) -> None:
        """Append `data`, hashing it on the way."""
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if written is None:
                continue
            view = view[written:]
        self._hash.update(data)
        self.size += len(data)

    def close(self) -> None:
        """Flush the file to stable storage and close it."""
        if not self._file.closed:
            try:
                os.fsync(self._file.fileno())
            finally:
                self._file.close()

    def entry(self, name: str) -> FileEntry:
        """The manifest entry of what was written."""
        return FileEntry(name=name, size=self.size, sha256=self._hash.hexdigest())

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        else:
            self._file.close()


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in chunks (never whole into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_entries(root: Path, base: Path) -> list[FileEntry]:
    """Entries for every file under `root`, named relative to `base`, in a stable order."""
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [
        FileEntry(name=str(p.relative_to(base)), size=p.stat().st_size, sha256=sha256_file(p))
        for p in paths
    ]


def verify_files(backup_dir: Path, manifest: Manifest) -> list[str]:
    """Check each file of the backup against its manifest; returns the problems found."""
    problems = []
    for entry in manifest.files:
        path = backup_dir / entry.name
        if not path.is_file():
            problems.append(f"{entry.name}: missing")
            continue
        size = path.stat().st_size
        if size != entry.size:
            problems.append(f"{entry.name}: size {size} differs from manifest {entry.size}")
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{entry.name}: sha256 differs from manifest")
    return problems
