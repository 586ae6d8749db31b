"""What a k3s snapshot costs k3s: the writer's write latency with and without a snapshot.

A stand-in datastore (kine's schema, WAL mode) of `--size-mb` is written to by another
process, one transaction every `--interval` seconds, as k3s writes its leases and
events. In one run, alternating, the script measures windows of:

- idle: no snapshot (the baseline);
- copy: only the SQLite online backup, per method (stepped with a pinned read snapshot,
  one step, and stepped without the pin, which restarts whenever the writer commits);
- snapshot: the agent's whole `take_snapshot` (copy, integrity check, gzip'd archive).

and prints the writer's p50/p99/max latency per window kind and the p99 ratios against
idle, plus how long each method took.

    .venv/bin/python bench/k3s_snapshot.py --size-mb 100 --rounds 2
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from socle_agent.sources.k3s import SnapshotOptions, datastore_path, take_snapshot  # noqa: E402
from socle_agent.sources.sqlite_backup import BackupOptions, backup_database  # noqa: E402

from tests.standins.k3s_datastore import (  # noqa: E402
    create_datastore,
    fill_to_size,
    make_server_dir,
)
from tests.standins.kine_writer import WriterProcess, WriterResult, percentile  # noqa: E402

COPY_METHODS = {
    "stepped": BackupOptions(),
    "one-step": BackupOptions(stepped=False),
    "stepped-unpinned": BackupOptions(pin_read_snapshot=False),
}
SNAPSHOT_METHODS = {
    "stepped": SnapshotOptions(backup=COPY_METHODS["stepped"]),
    "one-step": SnapshotOptions(backup=COPY_METHODS["one-step"]),
}


@dataclass
class Windows:
    """Time windows (start, end) per kind, and notes on how each run went."""

    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, start: float, end: float, note: str = "") -> None:
        self.spans.setdefault(kind, []).append((start, end))
        if note:
            self.notes.setdefault(kind, []).append(note)


def timed(windows: Windows, kind: str, action: Callable[..., str], *args: object) -> None:
    start = time.monotonic()
    note = action(*args)
    windows.add(kind, start, time.monotonic(), note)


def idle(seconds: float) -> str:
    time.sleep(seconds)
    return ""


def copy_once(db: Path, scratch: Path, options: BackupOptions) -> str:
    target = scratch / "copy.db"
    outcome = backup_database(db, target, options)
    for leftover in scratch.iterdir():
        leftover.unlink()
    fallback = f", fell back: {outcome.fallback_reason}" if outcome.fallback_reason else ""
    return (
        f"{outcome.duration_seconds:.2f} s {outcome.method}, {outcome.steps} steps, "
        f"{outcome.restarts} restarts{fallback}"
    )


def snapshot_once(
    server_dir: Path, config: Path, backups: Path, options: SnapshotOptions
) -> str:
    start = time.monotonic()
    backup = take_snapshot(server_dir, config, backups, options)
    elapsed = time.monotonic() - start
    details = backup.manifest.details
    shutil.rmtree(backup.path)
    return (
        f"{elapsed:.2f} s total, copy {details['backup_seconds']:.2f} s {details['method']}, "
        f"archive {backup.manifest.size_bytes / 1e6:.1f} MB"
    )


def report(result: WriterResult, windows: Windows) -> None:
    def latencies(kind: str) -> list[float]:
        return [lat for start, end in windows.spans[kind] for lat in result.latencies(start, end)]

    idle = latencies("idle")
    idle_p99 = percentile(idle, 99)
    print(f"\nwriter: {result.writes} writes, {len(result.errors)} errors")
    print(f"{'window':<28}{'writes':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'p99/idle':>10}")
    for kind in windows.spans:
        values = latencies(kind)
        p99 = percentile(values, 99)
        ratio = p99 / idle_p99 if idle_p99 else float("nan")
        print(
            f"{kind:<28}{len(values):>8}{percentile(values, 50) * 1e3:>10.2f}"
            f"{p99 * 1e3:>10.2f}{max(values, default=0) * 1e3:>10.2f}{ratio:>10.2f}"
        )
    print()
    for kind, notes in windows.notes.items():
        for note in notes:
            print(f"{kind:<28}{note}")
    if result.errors:
        print("writer errors:", result.errors[:5])


def main(argv: list[str] | None = None) -> int:
    """Build the stand-in datastore, run the alternated windows, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100, help="datastore size (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    parser.add_argument("--interval", type=float, default=0.01, help="writer pause (s)")
    parser.add_argument("--idle", type=float, default=5.0, help="length of an idle window (s)")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="socle-bench-k3s-", dir=args.workdir))
    try:
        server_dir = root / "server"
        config = root / "config.yaml"
        db = datastore_path(server_dir)
        create_datastore(db)
        started = time.monotonic()
        fill_to_size(db, args.size_mb * 1024 * 1024)
        make_server_dir(server_dir, config)
        print(
            f"datastore: {db.stat().st_size / 1e6:.0f} MB, built in "
            f"{time.monotonic() - started:.0f} s; writer every {args.interval * 1e3:.0f} ms"
        )
        scratch = root / "scratch"
        scratch.mkdir()
        backups = root / "backups"
        windows = Windows()
        with WriterProcess(db, root / "writer.json", interval=args.interval) as writer:
            time.sleep(1.0)
            for n in range(args.rounds):
                copy_order = list(COPY_METHODS.items())
                snap_order = list(SNAPSHOT_METHODS.items())
                if n % 2:
                    copy_order.reverse()
                    snap_order.reverse()
                for name, copy_options in copy_order:
                    timed(windows, "idle", idle, args.idle)
                    timed(windows, f"copy {name}", copy_once, db, scratch, copy_options)
                for name, snap_options in snap_order:
                    timed(windows, "idle", idle, args.idle)
                    timed(
                        windows, f"snapshot {name}", snapshot_once,
                        server_dir, config, backups, snap_options,
                    )
                print(f"round {n + 1} of {args.rounds} done", flush=True)
            timed(windows, "idle", idle, args.idle)
        report(writer.result, windows)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
