"""Benchmark: an off-site copy of a backup folder, first and second (deduplicated).

    .venv/bin/python bench/offsite_copy.py [--size-mb 1024] [--changed 0.1]

Makes a folder shaped like a day's backups (a directory-format dump: per-table files of
compressed, incompressible data, and a manifest), then the next day's (the same tables,
a fraction of them changed), and sends each with plain `restic backup` to an append-only
REST server on the loopback address (`rclone serve restic --append-only`), as the node
does. Prints each copy's time, what restic says it added, and the bytes the server stored.

This is the reference the agent's off-site job is held to (issue: at most 1.1x the time
of plain `restic backup` of the same folder); the job itself is measured here once it
exists, side by side with these runs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TABLE_MB = 32
PASSWORD = "bench-" + secrets.token_hex(16)


def folder_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def write_backup(folder: Path, size_mb: int, previous: Path | None, changed: float) -> None:
    """A dump folder of ``size_mb``: tables copied from ``previous`` except ``changed``."""
    folder.mkdir(parents=True)
    tables = max(1, size_mb // TABLE_MB)
    rewrite = set(range(int(tables * changed))) if previous else set(range(tables))
    for index in range(tables):
        name = f"{index:04d}.dat.gz"
        if previous is not None and index not in rewrite:
            shutil.copyfile(previous / name, folder / name)
            continue
        with (folder / name).open("wb") as table:
            for _ in range(TABLE_MB):
                table.write(os.urandom(1024 * 1024))
    (folder / "toc.dat").write_bytes(os.urandom(64 * 1024))
    (folder / "manifest.json").write_text(json.dumps({"tables": tables, "size_mb": size_mb}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def restic_backup(env: dict[str, str], folder: Path) -> tuple[float, dict[str, object]]:
    """Plain `restic backup` of ``folder``; return the wall time and restic's summary."""
    started = time.perf_counter()
    proc = subprocess.run(
        ["restic", "backup", "--json", "--host", "bench", "--tag", "kind=postgres",
         "--tag", "database=bench", str(folder)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = next(line for line in lines if line.get("message_type") == "summary")
    return seconds, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of one day's backup")
    parser.add_argument("--changed", type=float, default=0.1, help="tables changed next day")
    args = parser.parse_args()
    for tool in ("restic", "rclone"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: run scripts/setup-machine.sh", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="socle-bench-offsite-") as scratch:
        work = Path(scratch)
        day1, day2, store = work / "day1", work / "day2", work / "store"
        store.mkdir()
        print(f"writing two days of backups, {args.size_mb} MB each...", file=sys.stderr)
        write_backup(day1, args.size_mb, None, args.changed)
        write_backup(day2, args.size_mb, day1, args.changed)
        port = free_port()
        server = subprocess.Popen(
            ["rclone", "serve", "restic", "--append-only", "--addr", f"127.0.0.1:{port}",
             "--user", "bench", "--pass", PASSWORD, str(store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            env = {**os.environ, "RESTIC_PASSWORD": PASSWORD,
                   "RESTIC_REPOSITORY": f"rest:http://bench:{PASSWORD}@127.0.0.1:{port}/repo/",
                   "RESTIC_CACHE_DIR": str(work / "cache")}  # fmt: skip
            for _ in range(50):
                if subprocess.run(["restic", "init"], env=env, capture_output=True).returncode == 0:
                    break
                time.sleep(0.2)
            version = subprocess.run(["restic", "version"], capture_output=True, text=True)
            print(version.stdout.strip())
            print(f"{'copy':<8}{'size MB':>9}{'wall s':>9}{'added MB':>10}{'stored MB':>11}")
            results = []
            for name, folder in (("first", day1), ("second", day2)):
                before = folder_size(store)
                seconds, summary = restic_backup(env, folder)
                stored = folder_size(store) - before
                added = int(str(summary.get("data_added", 0)))
                results.append((seconds, stored))
                print(f"{name:<8}{folder_size(folder) / 1e6:>9.0f}{seconds:>9.1f}"
                      f"{added / 1e6:>10.1f}{stored / 1e6:>11.1f}")  # fmt: skip
            print(f"second copy sent {results[1][1] / max(results[0][1], 1):.1%} of the first's "
                  f"bytes, in {results[1][0] / results[0][0]:.2f}x its time")  # fmt: skip
            print("agent off-site job: not measured yet (to run beside these, at most 1.1x)")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
