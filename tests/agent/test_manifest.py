"""Manifests and sha256 helpers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from socle_agent.manifest import (
    FileEntry,
    HashingWriter,
    Manifest,
    file_entries,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)


def _manifest(entry: FileEntry) -> Manifest:
    return Manifest(
        id="app-20261126T020000Z",
        kind="postgres",
        subject="app",
        started=1.0,
        finished=2.0,
        format="custom",
        files=(entry,),
        details={"row_counts": {"public.t": 3}},
    )


def test_hashing_writer_counts_and_hashes_what_it_writes(tmp_path: Path) -> None:
    data = [b"x" * 1000, b"y" * 5000]
    with HashingWriter(tmp_path / "dump") as out:
        for chunk in data:
            out.write(chunk)
    entry = out.entry("dump")
    assert entry.size == 6000
    assert entry.sha256 == hashlib.sha256(b"".join(data)).hexdigest()
    assert entry.sha256 == sha256_file(tmp_path / "dump")
    assert (tmp_path / "dump").stat().st_mode & 0o777 == 0o600


def test_hashing_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "dump").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        HashingWriter(tmp_path / "dump")


def test_write_manifest_then_read_gives_it_back(tmp_path: Path) -> None:
    manifest = _manifest(FileEntry("dump", 3, "ab"))
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    assert manifest.size_bytes == 3


def test_from_json_with_missing_field_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not a valid manifest"):
        Manifest.from_json('{"id": "x"}')


def test_verify_files_finds_flipped_byte_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "dump").write_bytes(b"abcdef")
    manifest = _manifest(file_entries(tmp_path / "dump", tmp_path)[0])
    assert verify_files(tmp_path, manifest) == []
    (tmp_path / "dump").write_bytes(b"abcdeg")
    assert verify_files(tmp_path, manifest) == ["dump: sha256 differs from manifest"]
    (tmp_path / "dump").write_bytes(b"abc")
    assert verify_files(tmp_path, manifest) == ["dump: size 3 differs from manifest 6"]
    (tmp_path / "dump").unlink()
    assert verify_files(tmp_path, manifest) == ["dump: missing"]


def test_file_entries_of_a_directory_lists_every_file_relative_to_base(tmp_path: Path) -> None:
    (tmp_path / "dump").mkdir()
    (tmp_path / "dump" / "toc.dat").write_bytes(b"1")
    (tmp_path / "dump" / "3001.dat.gz").write_bytes(b"22")
    names = [e.name for e in file_entries(tmp_path / "dump", tmp_path)]
    assert names == ["dump/3001.dat.gz", "dump/toc.dat"]
