"""Stand-in for k3s's writes: another process appending kine revisions to the datastore.

Run as `python -m tests.standins.kine_writer --db PATH --out RESULT.json`. Each write is one
transaction that inserts a new revision of a lease key (as kine does on an update) and, in
the same transaction, moves the in-place compaction row to the new revision. A consistent
snapshot therefore holds ids 1..N without a gap and a compaction row pointing at N.
The writer stops on SIGTERM and writes its errors and per-write latencies to the result.

`WriterProcess` starts and stops it from a test or a benchmark:

    with WriterProcess(db_path, tmp_path / "writer.json") as writer:
        ...  # take snapshots
    assert writer.result.errors == []
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from tests.standins.k3s_datastore import COMPACT_KEY, connect, object_value

LEASE_PREFIX = "/registry/leases/kube-node-lease/"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class WriterResult:
    """What the writer saw: writes committed, errors, and (start, latency) per write in seconds.

    Start times are `time.monotonic()`, which is system-wide on Linux, so a caller can tell
    which writes fell inside a window it measured itself.
    """

    writes: int
    errors: list[str]
    samples: list[tuple[float, float]]
    last_id: int

    def latencies(self, start: float | None = None, end: float | None = None) -> list[float]:
        """Latencies of the writes that started inside [start, end] (all when not given)."""
        lo = float("-inf") if start is None else start
        hi = float("inf") if end is None else end
        return [lat for t0, lat in self.samples if lo <= t0 <= hi]


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile of `values` (pct in 0..100); 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def insert_revision(
    conn: sqlite3.Connection,
    name: str,
    value: bytes | None,
    prev_revision: int = 0,
    deleted: bool = False,
) -> int:
    """Write one kine revision of `name` as kine does, in one transaction; return its id.

    The compaction row moves to the new revision in the same transaction, so a consistent
    copy of the datastore always has the compaction row pointing at its highest id.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "INSERT INTO kine (name, created, deleted, create_revision, prev_revision,"
            " lease, value, old_value) VALUES (?, ?, ?, ?, ?, 0, ?, NULL)",
            (name, 0 if prev_revision else 1, 1 if deleted else 0, prev_revision,
             prev_revision, value),
        )  # fmt: skip
        new_id = cur.lastrowid
        assert new_id is not None
        conn.execute("UPDATE kine SET prev_revision = ? WHERE name = ?", (new_id, COMPACT_KEY))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return new_id


class LeaseWriter:
    """Renews lease keys in turn, one kine revision per write, as a k3s server does."""

    def __init__(self, conn: sqlite3.Connection, value_size: int = 1500, keys: int = 50) -> None:
        self.conn = conn
        self.value_size = value_size
        self.names = [f"{LEASE_PREFIX}node-{i}" for i in range(keys)]
        self.last_rev: dict[str, int] = dict(
            conn.execute(
                "SELECT name, max(id) FROM kine WHERE name LIKE ? GROUP BY name",
                (LEASE_PREFIX + "%",),
            ).fetchall()
        )
        self.rng = random.Random(42)
        self.count = 0

    def write_one(self) -> int:
        """Write the next lease revision and return its id (raises sqlite3.Error)."""
        name = self.names[self.count % len(self.names)]
        self.count += 1
        value = object_value(self.rng, name, self.count, self.value_size)
        new_id = insert_revision(self.conn, name, value, self.last_rev.get(name, 0))
        self.last_rev[name] = new_id
        return new_id


def _run(db: Path, out: Path, interval: float, value_size: int, keys: int) -> int:
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    conn = connect(db)
    writer = LeaseWriter(conn, value_size=value_size, keys=keys)
    errors: list[str] = []
    samples: list[tuple[float, float]] = []
    writes = 0
    last_id = 0
    print("ready", flush=True)
    while not stopping:
        t0 = time.monotonic()
        try:
            last_id = writer.write_one()
        except sqlite3.Error as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        else:
            writes += 1
        samples.append((t0, time.monotonic() - t0))
        if interval > 0:
            time.sleep(interval)
    conn.close()
    out.write_text(
        json.dumps({"writes": writes, "errors": errors, "samples": samples, "last_id": last_id})
    )
    return 0


class WriterProcess:
    """Run the writer in another process for the duration of a `with` block.

    `result` is filled in when the block ends (the writer is stopped with SIGTERM).
    """

    def __init__(
        self,
        db: Path,
        out: Path,
        interval: float = 0.01,
        value_size: int = 1500,
        keys: int = 50,
    ) -> None:
        self.db = db
        self.out = out
        self.args = [
            sys.executable, "-m", "tests.standins.kine_writer", "--db", str(db), "--out", str(out),
            "--interval", str(interval), "--value-size", str(value_size), "--keys", str(keys),
        ]
        self.proc: subprocess.Popen[str] | None = None
        self._result: WriterResult | None = None

    def __enter__(self) -> WriterProcess:
        self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"writer did not start (said {line!r})")
        return self

    def stop(self) -> WriterResult:
        """Stop the writer and read its result."""
        if self._result is None:
            assert self.proc is not None
            self.proc.terminate()
            rc = self.proc.wait(timeout=60)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            if rc != 0:
                raise RuntimeError(f"writer exited with {rc}")
            raw = json.loads(self.out.read_text())
            self._result = WriterResult(
                writes=raw["writes"],
                errors=raw["errors"],
                samples=[(float(a), float(b)) for a, b in raw["samples"]],
                last_id=raw["last_id"],
            )
        return self._result

    @property
    def result(self) -> WriterResult:
        """The writer's result, once stopped."""
        if self._result is None:
            raise RuntimeError("writer still running")
        return self._result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and write until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.01, help="pause between writes (s)")
    parser.add_argument("--value-size", type=int, default=1500)
    parser.add_argument("--keys", type=int, default=50, help="distinct lease keys updated")
    args = parser.parse_args(argv)
    return _run(args.db, args.out, args.interval, args.value_size, args.keys)


if __name__ == "__main__":
    sys.exit(main())
