"""The backup directory as the catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
from socle_agent import catalogue
from socle_agent.manifest import FileEntry, Manifest, write_manifest


def make_backup(root: Path, kind: str, backup_id: str, finished: float, subject: str = "app",
                size: int = 10) -> Path:
    """A complete backup directory with one file of `size` bytes and its manifest."""
    path = root / kind / backup_id
    path.mkdir(parents=True)
    (path / "dump").write_bytes(b"x" * size)
    write_manifest(
        path,
        Manifest(backup_id, kind, subject, finished - 1, finished, "custom",
                 (FileEntry("dump", size, "0" * 64),)),
    )
    return path


def test_list_backups_orders_by_end_and_skips_partial_and_broken(tmp_path: Path) -> None:
    make_backup(tmp_path, "postgres", "b", 200)
    make_backup(tmp_path, "postgres", "a", 100)
    (tmp_path / "postgres" / "c.partial").mkdir()
    broken = tmp_path / "postgres" / "d"
    broken.mkdir()
    (broken / "manifest.json").write_text("{")
    make_backup(tmp_path, "k3s", "k", 150, subject="k3s")
    assert [b.manifest.id for b in catalogue.list_backups(tmp_path)] == ["a", "k", "b"]
    assert [b.manifest.id for b in catalogue.list_backups(tmp_path, "postgres")] == ["a", "b"]
    assert broken.exists()


def test_newest_and_find_backup(tmp_path: Path) -> None:
    make_backup(tmp_path, "postgres", "a", 100)
    make_backup(tmp_path, "postgres", "b", 200, subject="other")
    newest = catalogue.newest(tmp_path, "postgres", "app")
    assert newest is not None and newest.manifest.id == "a"
    assert catalogue.find_backup(tmp_path, "b").manifest.subject == "other"
    with pytest.raises(LookupError):
        catalogue.find_backup(tmp_path, "zzz")
    assert catalogue.newest(tmp_path, "k3s") is None


def test_remove_backup_and_remove_partials(tmp_path: Path) -> None:
    make_backup(tmp_path, "postgres", "a", 100)
    (tmp_path / "postgres" / "b.partial").mkdir()
    catalogue.remove_backup(catalogue.find_backup(tmp_path, "a"))
    assert catalogue.remove_partials(tmp_path, "postgres") == [tmp_path / "postgres" / "b.partial"]
    assert list((tmp_path / "postgres").iterdir()) == []


def test_find_backup_refuses_an_id_that_is_a_path(tmp_path: Path) -> None:
    make_backup(tmp_path, "postgres", "app-1", 1000.0)
    for bad in ("../postgres/app-1", "app-1/..", "..", ""):
        with pytest.raises(LookupError):
            catalogue.find_backup(tmp_path, bad)
    assert catalogue.find_backup(tmp_path, "app-1").manifest.id == "app-1"
