"""Disk guard on a real small filesystem (a tmpfs mounted for the test)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from socle_agent.config import DiskSection
from socle_agent.diskguard import check_fits, check_mounts, disk_usage, existing_ancestor

MIB = 1 << 20


@pytest.fixture()
def eight_mib(small_fs: Callable[[int], Path]) -> Path:
    return small_fs(8)


def test_disk_usage_of_small_fs_gives_its_size(eight_mib: Path) -> None:
    usage = disk_usage(eight_mib)
    assert usage.size_bytes == 8 * MIB
    assert usage.free_bytes == 8 * MIB
    assert usage.free_ratio == 1.0


def test_check_fits_counts_reserve_by_ratio_and_bytes(eight_mib: Path) -> None:
    by_ratio = DiskSection(min_free_ratio=0.5, min_free_bytes=0)
    assert check_fits(eight_mib, 3 * MIB, by_ratio).fits
    refused = check_fits(eight_mib, 5 * MIB, by_ratio)
    assert not refused.fits
    assert f"must leave {4 * MIB} free" in refused.reason
    by_bytes = DiskSection(min_free_ratio=0.0, min_free_bytes=7 * MIB)
    assert not check_fits(eight_mib, 2 * MIB, by_bytes).fits


def test_check_mounts_sees_a_filling_disk(eight_mib: Path) -> None:
    disk = DiskSection(mounts=(eight_mib,), min_free_ratio=0.25)
    assert all(v.fits for v in check_mounts(disk))
    (eight_mib / "filler").write_bytes(b"\0" * (7 * MIB))
    [verdict] = check_mounts(disk)
    assert not verdict.fits and verdict.usage.free_bytes <= MIB


def test_existing_ancestor_of_missing_dir_is_its_parent(tmp_path: Path) -> None:
    assert existing_ancestor(tmp_path / "a" / "b") == tmp_path
