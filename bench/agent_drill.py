"""Benchmark: the agent's PostgreSQL drill against a plain `pg_restore -j 2`, alternated.

On the generated database of `agent_backup.py`, one dump is taken by the agent with its
default settings (directory format). Then, in the same run, `socle-agent drill
postgres` (checksums read while pg_restore -j 2 fills a scratch database, row counts
compared, scratch database dropped) and a plain `createdb` + `pg_restore -j 2` of the
same dump into a fresh database take turns. Printed: median wall times and their ratio
(the target is at most 1.1).

    .venv/bin/python bench/agent_drill.py                  # about 100 MB
    .venv/bin/python bench/agent_drill.py --sizes 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.agent_backup import AGENT, agent_run, generate, timed, write_config  # noqa: E402
from tests.agent.pgcluster import PG_BIN, PgCluster  # noqa: E402


def plain_restore(pg: PgCluster, dump: Path) -> float:
    """createdb, pg_restore -j 2 into it (timed), then drop it (not timed)."""
    env = dict(os.environ, PGPASSWORD=pg.password)
    login = ["-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user]
    start = time.perf_counter()
    timed([str(PG_BIN / "createdb"), *login, "plain_restore"], env)
    timed([str(PG_BIN / "pg_restore"), "-j", "2", *login, "-d", "plain_restore", str(dump)], env)
    seconds = time.perf_counter() - start
    pg.psql("drop database plain_restore")
    return seconds


def bench_size(pg: PgCluster, megabytes: int, rounds: int) -> dict[str, float]:
    """Generate a database, dump it with the agent, time drills against plain restores."""
    database = f"bench_{megabytes}mb"
    db_bytes = generate(pg, database, megabytes)
    with tempfile.TemporaryDirectory(prefix="socle-bench-") as tmp:
        work = Path(tmp)
        config = write_config(work, pg, database)
        config.write_text(config.read_text() + "\n[drill]\nrestore_jobs = 2\n")
        agent_run(config, database, work)
        [backup] = (work / "backups" / "postgres").iterdir()
        drill = [AGENT, "--config", str(config), "drill", "postgres"]
        agent_s: list[float] = []
        plain_s: list[float] = []
        for n in range(rounds):
            steps = [lambda: agent_s.append(timed(drill, dict(os.environ))[0]),
                     lambda: plain_s.append(plain_restore(pg, backup / "dump"))]
            for step in steps if n % 2 == 0 else reversed(steps):
                step()
            print(f"  round {n + 1}: agent drill {agent_s[-1]:6.2f} s   "
                  f"pg_restore -j 2 {plain_s[-1]:6.2f} s")
    pg.psql(f"drop database {database}")
    return {
        "db_mb": db_bytes / 1e6,
        "agent_s": statistics.median(agent_s),
        "plain_s": statistics.median(plain_s),
        "ratio": statistics.median(agent_s) / statistics.median(plain_s),
    }


def main() -> int:
    """Parse the flags, run the benchmark, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100", help="database sizes in MB (default: 100)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each")
    args = parser.parse_args()
    pg = PgCluster(Path(tempfile.mkdtemp(prefix="socle-bench-pg-")))
    results = []
    try:
        for megabytes in (int(s) for s in args.sizes.split(",")):
            print(f"database of about {megabytes} MB:")
            results.append(bench_size(pg, megabytes, args.rounds))
    finally:
        pg.destroy()
    print(f"\n{'database':>10} {'agent drill':>12} {'pg_restore':>11} {'ratio':>6}")
    for r in results:
        print(f"{r['db_mb']:>7.0f} MB {r['agent_s']:>10.2f} s {r['plain_s']:>9.2f} s "
              f"{r['ratio']:>6.3f}")
    print("target: ratio <= 1.1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
