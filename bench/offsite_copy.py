"""Benchmark: the agent's off-site copy against plain `restic backup`, first and second copy.

    .venv/bin/python bench/offsite_copy.py [--size-mb 1024] [--changed 0.1] [--rounds 3]

Makes two days of a database's backup in the agent's catalogue, shaped like its
directory-format dumps (per-table files of compressed, so incompressible, data, a table
of contents and the manifest with every file's sha256): day two holds the same tables
as day one but a fraction of them rewritten. Then, side by side on one REST server on the
loopback address (`rclone serve restic --append-only`, as the off-site host runs it), each
round sends day one then day two twice: with the agent's job (`offsite_copy`, in the
process as the daemon runs it: reading what is off-site, the tagged and dated `restic
backup`, the state written) into one repository, and with plain `restic backup` of the
same folders into another. The order alternates between rounds; the folders are read
once before each copy so both find them in the page cache. Printed: median wall times,
their ratio and the median of each round's ratio (the target is at most 1.1), and the
bytes each copy sent.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from socle_agent.config import parse_config  # noqa: E402
from socle_agent.jobs import run_job  # noqa: E402
from socle_agent.manifest import Manifest, file_entries, write_manifest  # noqa: E402

from tests.agent.offsite_repository import RestServer, program  # noqa: E402

TABLE_MB = 32
DAY_SECONDS = 86400.0


def folder_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def write_backup(folder: Path, size_mb: int, previous: Path | None, changed: float,
                 finished: float) -> None:
    """A backup folder of about ``size_mb``: tables copied from ``previous`` but
    ``changed`` of them, and its manifest."""
    dump = folder / "dump"
    dump.mkdir(parents=True)
    tables = max(1, size_mb // TABLE_MB)
    rewrite = set(range(int(tables * changed))) if previous else set(range(tables))
    for index in range(tables):
        name = f"{index + 3000}.dat.gz"
        if previous is not None and index not in rewrite:
            shutil.copyfile(previous / "dump" / name, dump / name)
            continue
        with (dump / name).open("wb") as table:
            for _ in range(TABLE_MB):
                table.write(os.urandom(1024 * 1024))
    (dump / "toc.dat").write_bytes(os.urandom(64 * 1024))
    manifest = Manifest(id=folder.name, kind="postgres", subject="bench",
                        started=finished - 60, finished=finished, format="directory",
                        files=tuple(file_entries(dump, folder)),
                        details={"row_counts": {"public.t": tables}})
    write_manifest(folder, manifest)


def warm(folder: Path) -> None:
    """Read every file once: both contenders then find the folder in the page cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                while handle.read(1 << 22):
                    pass


def plain_backup(env: dict[str, str], folder: Path, finished: float) -> tuple[float, int]:
    """Plain `restic backup` of ``folder``; the wall time and the bytes it added."""
    started = time.perf_counter()
    proc = subprocess.run(
        [program("restic"), "backup", "--json", "--host", "bench", "--tag", "kind=postgres",
         "--tag", "database=bench", "--tag", f"backup={folder.name}", str(folder)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = next(line for line in lines if line.get("message_type") == "summary")
    return seconds, int(summary.get("data_added", 0))


def agent_copy(config_data: Mapping[str, Any]) -> tuple[float, int]:
    """The agent's job offsite_copy, in this process; the wall time and the bytes added."""
    config = parse_config(config_data, check_paths=False)
    started = time.perf_counter()
    result = run_job("offsite_copy", config)
    seconds = time.perf_counter() - started
    if result.status != "ok" or result.outcome is None:
        raise SystemExit(f"offsite_copy: {result.status}: {result.error}")
    return seconds, int(result.outcome.size_bytes or 0)


def one_round(server: RestServer, work: Path, days: list[Path], number: int,
              agent_first: bool) -> list[tuple[str, float, float, int, int]]:
    """Both contenders send day one then day two into fresh repositories of their own."""
    name = f"r{number}-{secrets.token_hex(2)}"
    agent_files = server.node_files(work / f"{name}-agent", host="bench", repository=f"{name}a")
    plain_files = server.node_files(work / f"{name}-plain", host="bench", repository=f"{name}p")
    backups = work / f"{name}-backups"
    (backups / "postgres").mkdir(parents=True)
    config = {"agent": {"state_file": str(work / f"{name}-state" / "state.json"),
                        "backup_dir": str(backups)},
              "offsite": {"environment_file": str(agent_files.env_file)}}
    rows = []
    for label, day in zip(("first", "second"), days, strict=True):
        # the day's backup enters the agent's catalogue as a backup job would leave it
        shutil.copytree(day, backups / "postgres" / day.name, copy_function=os.link)
        finished = json.loads((day / "manifest.json").read_text())["finished"]
        timings: dict[str, tuple[float, int]] = {}
        for contender in (("agent", "plain") if agent_first else ("plain", "agent")):
            warm(day)
            if contender == "agent":
                timings[contender] = agent_copy(config)
            else:
                timings[contender] = plain_backup(plain_files.environment(), day, finished)
        rows.append((label, timings["agent"][0], timings["plain"][0], timings["agent"][1],
                     timings["plain"][1]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of one day's backup")
    parser.add_argument("--changed", type=float, default=0.1, help="tables changed next day")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for tool in ("restic", "rclone"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: run scripts/setup-machine.sh", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="socle-bench-offsite-") as scratch:
        work = Path(scratch)
        now = time.time()
        day1 = work / "days" / "bench-20250130T020000Z"
        day2 = work / "days" / "bench-20250131T020000Z"
        print(f"writing two days of backups, {args.size_mb} MB each...", file=sys.stderr)
        write_backup(day1, args.size_mb, None, args.changed, now - DAY_SECONDS)
        write_backup(day2, args.size_mb, day1, args.changed, now)
        version = subprocess.run([program("restic"), "version"], capture_output=True, text=True)
        print(version.stdout.strip())
        print(f"one day's backup: {folder_size(day1) / 1e6:.0f} MB, day two with "
              f"{args.changed:.0%} of its tables rewritten; {args.rounds} rounds, alternated")
        results: dict[str, list[tuple[float, float, int, int]]] = {"first": [], "second": []}
        with RestServer(work / "store") as server:
            for number in range(args.rounds):
                for label, agent_s, plain_s, agent_b, plain_b in one_round(
                        server, work, [day1, day2], number, agent_first=number % 2 == 0):
                    results[label].append((agent_s, plain_s, agent_b, plain_b))
                    print(f"  round {number + 1} {label:<6} agent {agent_s:6.1f} s  "
                          f"plain {plain_s:6.1f} s", file=sys.stderr)
        print(f"{'copy':<8}{'agent s':>9}{'plain s':>9}{'ratio':>7}{'per round':>11}"
              f"{'agent sent MB':>15}{'plain sent MB':>15}")
        for label, rows in results.items():
            medians = [float(statistics.median(r[column] for r in rows)) for column in range(4)]
            per_round = statistics.median(r[0] / r[1] for r in rows)
            print(f"{label:<8}{medians[0]:>9.1f}{medians[1]:>9.1f}{medians[0] / medians[1]:>7.2f}"
                  f"{per_round:>11.2f}{medians[2] / 1e6:>15.1f}{medians[3] / 1e6:>15.1f}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        first = statistics.median(r[2] for r in results["first"])
        second = statistics.median(r[2] for r in results["second"])
        print(f"the agent's second copy sent {second / 1e6:.1f} MB, {second / max(first, 1):.1%} "
              "of the first's (target for the time ratio: at most 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
