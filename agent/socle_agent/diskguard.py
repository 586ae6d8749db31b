"""Disk guard: free space per mount, and whether a job of a given size fits.

Example:

    verdict = check_fits(Path("/var/backups/socle"), expected_bytes=2 << 30, disk=config.disk)
    if not verdict.fits:
        raise DiskFull(verdict.reason)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from socle_agent.config import DiskSection


class DiskFull(Exception):
    """A job refused because what it would write does not fit."""


@dataclass(frozen=True)
class DiskUsage:
    """Free and total bytes of the filesystem holding `mount`."""

    mount: str
    free_bytes: int
    size_bytes: int

    @property
    def free_ratio(self) -> float:
        """Free space as a fraction of the filesystem's size."""
        return self.free_bytes / self.size_bytes if self.size_bytes else 0.0


@dataclass(frozen=True)
class Verdict:
    """Whether a write fits, and in words why or why not."""

    fits: bool
    reason: str
    usage: DiskUsage


def disk_usage(mount: Path) -> DiskUsage:
    """Measure the filesystem holding `mount` (free space as an unprivileged user sees it)."""
    stats = os.statvfs(mount)
    return DiskUsage(
        mount=str(mount),
        free_bytes=stats.f_bavail * stats.f_frsize,
        size_bytes=stats.f_blocks * stats.f_frsize,
    )


def existing_ancestor(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (a backup dir may not exist yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_fits(path: Path, expected_bytes: int, disk: DiskSection) -> Verdict:
    """Would writing `expected_bytes` under `path` leave the free space `disk` demands?

    Example: a 10 GB filesystem with 1.2 GB free, min_free_ratio 0.05 (0.5 GB) and an
    expected 1 GB dump: 0.2 GB would remain, less than 0.5 GB, so it does not fit.
    """
    usage = disk_usage(existing_ancestor(path))
    reserve = max(disk.min_free_bytes, int(disk.min_free_ratio * usage.size_bytes))
    remaining = usage.free_bytes - expected_bytes
    if remaining < reserve:
        reason = (
            f"{usage.mount}: {usage.free_bytes} bytes free, the job expects to write "
            f"{expected_bytes} and must leave {reserve} free"
        )
        return Verdict(False, reason, usage)
    return Verdict(True, f"{usage.mount}: {remaining} bytes would remain free", usage)


def check_mounts(disk: DiskSection) -> list[Verdict]:
    """The state of every configured mount, each against its free-space reserve."""
    return [check_fits(mount, 0, disk) for mount in disk.mounts]
