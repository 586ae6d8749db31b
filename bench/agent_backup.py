"""Benchmark: the agent's PostgreSQL backup against a plain `pg_dump -Fc`, alternated.

A throwaway PostgreSQL cluster gets a generated database of realistic content
(customers, orders with JSON items, articles of prose, log events; numbers, text,
JSON, arrays and indexes; it compresses a few to one, not fifty). Then, in the same
run, `socle-agent backup postgres` with its default settings (directory format,
parallel workers, light compression, every file checksummed, row counts, roles) and a
plain `pg_dump -Fc -f FILE` (its default gzip level, same server, same TCP login) take
turns. Printed: medians of wall time and size, their ratios (targets: time at most
0.5, size at most 1.1), the agent process's peak resident memory (target: under
80 MB whatever the size, read from /proc while it runs), and which pg_dump and which
compression gave them.

    .venv/bin/python bench/agent_backup.py                 # about 100 MB
    .venv/bin/python bench/agent_backup.py --sizes 100,1000 --rounds 3
    .venv/bin/python bench/agent_backup.py --compressions auto,gzip:3   # side by side
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.agent.pgcluster import PG_BIN, PgCluster  # noqa: E402

AGENT = str(Path(sys.executable).with_name("socle-agent"))
_WORD_TEXT = """
the of and to in is that for it as was with be by on not he this are or his from at which
but have an they you were her she there been one all we their has would when if so no
will more can about said them some could into time only new two may first then do any
like my now over such our man me even most made after also did many before must through
back years where much your way well down should because each just those people how too
little state good very make world still own see men work long get here between both life
being under never day same another know while last might us great old year off come since
against go came right used take three himself few house use during without again place
american around however home small found thought went say part once general high upon
school every don does got united left number course war until always away something fact
though water less public put think almost hand enough far took head yet government system
better set told nothing night end why called didn eyes find going look asked later knew
point next city business give group toward young days let room president side social
order data invoice payment customer shipment warehouse account balance refund report
"""
WORDS = _WORD_TEXT.split()
COUNTRIES = ["FR", "DE", "ES", "IT", "NL", "BE", "PL", "PT", "SE", "IE", "GB", "US"]


def schema_sql() -> str:
    """Tables, indexes and a word list for the generator."""
    words = ",".join("'" + w + "'" for w in WORDS)
    countries = ",".join("'" + c + "'" for c in COUNTRIES)
    return textwrap.dedent(f"""
    create table vocab as select array[{words}] as w, array[{countries}] as c;
    create table customers (
        id bigserial primary key, email text not null, name text not null,
        country char(2) not null, created_at timestamptz not null, profile jsonb not null);
    create table orders (
        id bigserial primary key, customer_id bigint not null, status text not null,
        total numeric(10, 2) not null, placed_at timestamptz not null, items jsonb not null);
    create table articles (
        id bigserial primary key, author_id bigint not null, title text not null,
        body text not null, tags text[] not null, published_at timestamptz);
    create table events (
        id bigserial primary key, at timestamptz not null, level text not null,
        message text not null, context jsonb not null);
    create index on customers (email);
    create index on customers (country);
    create index on orders (customer_id);
    create index on orders (placed_at);
    create index on articles (published_at);
    create index on events (at);
    """)


BATCH_SQL = """
insert into customers (email, name, country, created_at, profile)
select 'user' || g || '.' || (random() * 1e6)::int || '@example.org',
       initcap(v.w[1 + (random() * {last})::int]) || ' '
           || initcap(v.w[1 + (random() * {last})::int]),
       v.c[1 + (random() * 11)::int], now() - random() * interval '1500 days',
       jsonb_build_object('plan', (array['free','pro','team'])[1 + g % 3],
                          'newsletter', random() < 0.3, 'score', (random() * 1000)::int,
                          'phone', '+33 6 ' || lpad(((random() * 1e8)::int)::text, 8, '0'))
from generate_series(1, 4000) g, vocab v;

insert into orders (customer_id, status, total, placed_at, items)
select 1 + (random() * 100000)::int, (array['paid','shipped','refunded','open'])[1 + g % 4],
       round((random() * 500)::numeric, 2), now() - random() * interval '900 days',
       (select jsonb_agg(jsonb_build_object('sku', 'SKU-' || (random() * 99999)::int,
                                            'qty', 1 + (random() * 4)::int,
                                            'price', round((random() * 90)::numeric, 2)))
        from generate_series(1, 1 + (g % 5)) i)
from generate_series(1, 25000) g;

insert into articles (author_id, title, body, tags, published_at)
select 1 + (random() * 100000)::int,
       initcap(array_to_string(array(select v.w[1 + (random() * {last})::int]
                                     from generate_series(1, 4 + g % 5) i), ' ')),
       array_to_string(array(select v.w[1 + (random() * {last})::int]
                             from generate_series(1, 120 + g % 240) i), ' '),
       array[v.w[1 + g % {count}], v.w[1 + (g * 7) % {count}]],
       now() - random() * interval '2000 days'
from generate_series(1, 2500) g, vocab v;

insert into events (at, level, message, context)
select now() - random() * interval '30 days',
       (array['info','info','info','warn','error'])[1 + g % 5],
       array_to_string(array(select v.w[1 + (random() * {last})::int]
                             from generate_series(1, 6 + g % 10) i), ' '),
       jsonb_build_object('request_id', md5(g::text || random()::text),
                          'latency_ms', (random() * 800)::int,
                          'path', '/api/v1/' || v.w[1 + g % {count}])
from generate_series(1, 40000) g, vocab v;
"""


FRESH_BYTES = 100_000_000
GROW_SQL = """
insert into orders (customer_id, status, total, placed_at, items)
select customer_id + 7, status, total + 1, placed_at - interval '3 days', items from orders
limit 200000;
insert into articles (author_id, title, body, tags, published_at)
select author_id + 3, title, body, tags, published_at - interval '1 day' from articles
limit 20000;
insert into events (at, level, message, context)
select at - interval '1 hour', level, message, context from events limit 300000;
"""


def _size(pg: PgCluster, database: str) -> int:
    size = int(pg.psql(f"select pg_database_size('{database}')"))
    print(f"  generating {database}: {size / 1e6:.0f} MB", end="\r", flush=True)
    return size


def generate(pg: PgCluster, database: str, megabytes: int) -> int:
    """Create and fill `database` until it reaches about `megabytes`; returns its bytes."""
    pg.psql(f"create database {database}")
    pg.psql(schema_sql(), database)
    target = megabytes * 1_000_000
    size = 0
    while size < min(target, FRESH_BYTES):
        pg.psql(BATCH_SQL.format(last=len(WORDS) - 1, count=len(WORDS)), database)
        size = _size(pg, database)
    while size < target:
        # Past the first 100 MB, copy what exists, shifted, rather than draw new words:
        # the same kind of content, much faster to make.
        pg.psql(GROW_SQL, database)
        size = _size(pg, database)
    pg.psql("vacuum analyze", database)
    print()
    return int(pg.psql(f"select pg_database_size('{database}')"))


@dataclass
class Run:
    """One timed run: wall seconds, peak RSS of the measured process, output bytes."""

    seconds: float
    peak_rss_kib: int
    output_bytes: int


def _hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run argv; returns (wall seconds, peak RSS of that process in KiB, polled from /proc)."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        hwm = _hwm_kib(process.pid)
        if hwm is not None:
            peak = max(peak, hwm)
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        assert process.stderr is not None
        raise SystemExit(f"{argv[0]} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, peak


def write_config(work: Path, pg: PgCluster, database: str, compression: str = "auto") -> Path:
    """An agent configuration dumping `database`, keeping only the newest dump."""
    password = work / "pg-password"
    password.write_text(pg.password + "\n")
    password.chmod(0o600)
    config = work / f"agent-{compression.replace(':', '-')}.toml"
    config.write_text(textwrap.dedent(f"""
    [agent]
    state_file = "{work / 'state.json'}"
    backup_dir = "{work / 'backups'}"
    log_level = "WARNING"
    [postgres]
    host = "127.0.0.1"
    port = {pg.port}
    user = "{pg.user}"
    password_file = "{password}"
    databases = ["{database}"]
    bin_dir = "{PG_BIN}"
    compression = "{compression}"
    [retention]
    keep_last = 1
    keep_daily = 0
    keep_weekly = 0
    keep_monthly = 0
    [disk]
    min_free_ratio = 0.0
    """))
    return config


def agent_run(config: Path, database: str, work: Path) -> Run:
    """One `socle-agent backup postgres` run."""
    seconds, peak = timed([AGENT, "--config", str(config), "backup", "postgres",
                           "--database", database], dict(os.environ))
    backups = sorted((work / "backups" / "postgres").iterdir())
    size = sum(f.stat().st_size for f in backups[-1].rglob("*") if f.is_file())
    return Run(seconds, peak, size)


def agent_manifest(work: Path) -> dict[str, object]:
    """The details of the newest backup's manifest (pg_dump version, compression, ...)."""
    [newest] = sorted((work / "backups" / "postgres").iterdir())[-1:]
    details: dict[str, object] = json.loads((newest / "manifest.json").read_text())["details"]
    return details


def plain_run(pg: PgCluster, database: str, work: Path) -> Run:
    """One plain `pg_dump -Fc -f FILE` run over the same TCP login."""
    out = work / "plain.dump"
    out.unlink(missing_ok=True)
    env = dict(os.environ, PGPASSWORD=pg.password)
    seconds, peak = timed([str(PG_BIN / "pg_dump"), "-Fc", "-f", str(out),
                           "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "-d", database],
                          env)
    return Run(seconds, peak, out.stat().st_size)


def bench_size(
    pg: PgCluster, megabytes: int, rounds: int, compressions: list[str]
) -> list[dict[str, Any]]:
    """Generate one database and time the agent (once per compression setting) and plain
    pg_dump -Fc on it, the order turning each round."""
    database = f"bench_{megabytes}mb"
    db_bytes = generate(pg, database, megabytes)
    results = []
    with tempfile.TemporaryDirectory(prefix="socle-bench-") as tmp:
        work = Path(tmp)
        for c in compressions:
            (work / c.replace(":", "-")).mkdir()
        configs = {c: write_config(work / c.replace(":", "-"), pg, database, c)
                   for c in compressions}
        runs: dict[str, list[Run]] = {c: [] for c in ["pg_dump -Fc", *compressions]}
        steps = {"pg_dump -Fc": lambda: plain_run(pg, database, work)}
        for c, config in configs.items():
            steps[c] = functools.partial(agent_run, config, database, config.parent)
        for step in steps.values():
            step()  # warm-up: page cache, catalog caches
        names = list(steps)
        for n in range(rounds):
            order = names[n % len(names):] + names[:n % len(names)]
            for name in order:
                runs[name].append(steps[name]())
            print(f"  round {n + 1}: " + "   ".join(
                f"{name} {runs[name][-1].seconds:6.2f} s" for name in names))
        details = {c: agent_manifest(config.parent) for c, config in configs.items()}
    pg.psql(f"drop database {database}")
    plain = runs["pg_dump -Fc"]
    plain_s = statistics.median(r.seconds for r in plain)
    plain_bytes = statistics.median(r.output_bytes for r in plain)
    for c in compressions:
        agent_s = statistics.median(r.seconds for r in runs[c])
        agent_bytes = statistics.median(r.output_bytes for r in runs[c])
        results.append({
            "db_mb": db_bytes / 1e6,
            "setting": c,
            "agent_s": agent_s,
            "plain_s": plain_s,
            "ratio": agent_s / plain_s,
            "agent_rss_mb": max(r.peak_rss_kib for r in runs[c]) / 1024,
            "agent_out_mb": agent_bytes / 1e6,
            "plain_out_mb": plain_bytes / 1e6,
            "pg_dump": str(details[c]["pg_dump_version"]),
            "compression": f"{details[c]['compression']}, {details[c]['jobs']} jobs",
        })
    return results


def main() -> int:
    """Parse the flags, run the benchmark, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100",
                        help="database sizes in MB, comma-separated (default: %(default)s; "
                             "add 1000 for the 1 GB run)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each tool")
    parser.add_argument("--compressions", default="auto",
                        help="the agent's postgres.compression settings to compare, "
                             "comma-separated (default: %(default)s)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pg = PgCluster(Path(tempfile.mkdtemp(prefix="socle-bench-pg-")))
    results = []
    try:
        for megabytes in sizes:
            print(f"database of about {megabytes} MB:")
            results += bench_size(pg, megabytes, args.rounds, args.compressions.split(","))
    finally:
        pg.destroy()
    print()
    print(f"{'database':>10} {'setting':>8} {'agent':>9} {'pg_dump -Fc':>11} {'time':>6} "
          f"{'agent dump':>11} {'pg_dump -Fc':>11} {'size':>6} {'agent RSS':>10}")
    for r in results:
        print(f"{r['db_mb']:>7.0f} MB {r['setting']:>8} {r['agent_s']:>7.2f} s "
              f"{r['plain_s']:>9.2f} s "
              f"{r['ratio']:>6.3f} {r['agent_out_mb']:>8.1f} MB {r['plain_out_mb']:>8.1f} MB "
              f"{r['agent_out_mb'] / r['plain_out_mb']:>6.3f} {r['agent_rss_mb']:>7.1f} MB")
    for r in results:
        print(f"{r['db_mb']:.0f} MB, {r['setting']}: {r['pg_dump']}, agent compression "
              f"{r['compression']}, "
              "pg_dump -Fc at its default gzip level")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"largest child process seen by this run (getrusage): {children:.1f} MB")
    print("targets: time ratio <= 0.5, size ratio <= 1.1, agent RSS < 80 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
