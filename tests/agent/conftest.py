"""Fixtures for the agent's tests: a real PostgreSQL 15 cluster, configs, an SMTP receiver.

The cluster is made with initdb in a temporary directory and run by pg_ctl with its
socket in that directory and TCP on a free port of 127.0.0.1; as root it runs as the
`postgres` system user. It is stopped and removed after the session.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.agent.pgcluster import PG_BIN, PgCluster, free_port

__all__ = ["PG_BIN", "PgCluster", "free_port"]

AGENT = str(Path(sys.executable).with_name("socle-agent"))


def make_cluster() -> PgCluster:
    """A new cluster in a fresh temporary directory (call `destroy` when done)."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing)")
    base = Path(tempfile.mkdtemp(prefix="socle-pg-"))
    return PgCluster(base)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """The session's PostgreSQL cluster."""
    cluster = make_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


SHOP_SQL = """
create table customers (
    id bigserial primary key, name text not null, email text unique, created timestamptz,
    profile jsonb
);
create table orders (
    id bigserial primary key, customer_id bigint references customers(id),
    total numeric(12, 2), placed timestamptz, note text
);
create index on orders (customer_id);
create schema audit;
create table audit.events (id bigint, happened timestamptz, payload jsonb);
insert into customers (name, email, created, profile)
select 'customer ' || g, 'c' || g || '@example.org', now() - g * interval '1 hour',
       jsonb_build_object('tier', g % 5, 'tags', jsonb_build_array('a' || g % 7, 'b' || g % 11))
from generate_series(1, 3000) g;
insert into orders (customer_id, total, placed, note)
select 1 + g % 3000, (g % 997) * 1.37, now() - g * interval '1 minute', md5(g::text)
from generate_series(1, 12000) g;
insert into audit.events select g, now(), jsonb_build_object('n', g) from generate_series(1, 500) g;
create role shop_reader login password 'reader';
grant select on all tables in schema public to shop_reader;
"""


@pytest.fixture(scope="session")
def shop_db(pg: PgCluster) -> str:
    """A database `shop` with three tables of generated rows, and a role."""
    pg.psql("create database shop")
    pg.psql(SHOP_SQL, "shop")
    return "shop"


@pytest.fixture()
def pg_password_file(tmp_path: Path, pg: PgCluster) -> Path:
    """The superuser's password in a 0600 file."""
    path = tmp_path / "pg-password"
    path.write_text(pg.password + "\n")
    path.chmod(0o600)
    return path


def config_text(
    tmp_path: Path,
    pg: PgCluster | None = None,
    password_file: Path | None = None,
    extra: str = "",
    databases: tuple[str, ...] = ("shop",),
    backup_dir: Path | None = None,
    metrics_port: int | None = None,
) -> str:
    """A working agent configuration for the tests, as TOML text.

    Metrics are served only with a `metrics_port`.
    """
    backup_dir = backup_dir or tmp_path / "backups"
    text = f"""
    [agent]
    state_file = "{tmp_path / 'state' / 'state.json'}"
    backup_dir = "{backup_dir}"
    log_level = "DEBUG"

    [retention]
    keep_last = 2
    keep_daily = 0
    keep_weekly = 0
    keep_monthly = 0

    [metrics]
    enabled = {str(metrics_port is not None).lower()}
    listen = "127.0.0.1"
    port = {metrics_port or 9464}
    """
    if pg is not None:
        text += f"""
    [postgres]
    host = "127.0.0.1"
    port = {pg.port}
    user = "postgres"
    password_file = "{password_file}"
    databases = {list(databases)!r}
    bin_dir = "{PG_BIN}"
    connect_attempts = 3
    retry_delay_seconds = 0.2
    """.replace("'", '"')
    return textwrap.dedent(text) + textwrap.dedent(extra)


def write_config(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    """Write a configuration file and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return path


@dataclass
class Mailbox:
    """Mails received by the test SMTP server."""

    host: str
    port: int
    messages: list[Message] = field(default_factory=list)

    def subjects(self) -> list[str]:
        """Subjects of the received mails, in order."""
        return [str(m["Subject"]) for m in self.messages]


class _Collect:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.box.messages.append(BytesParser().parsebytes(envelope.content))
        return "250 OK"


@pytest.fixture()
def smtp() -> Iterator[Mailbox]:
    """A real SMTP receiver (aiosmtpd) on 127.0.0.1, plain, no login."""
    from aiosmtpd.controller import Controller

    box = Mailbox("127.0.0.1", free_port())
    controller = Controller(_Collect(box), hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def mail_toml(box: Mailbox) -> str:
    """The [mail] section sending to `box` without TLS."""
    return f"""
    [mail]
    host = "{box.host}"
    port = {box.port}
    security = "none"
    from = "agent@node.test"
    to = ["ops@node.test"]
    """


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something true; fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


BIG_SQL = """
create table documents (
    id bigserial primary key, title text, body text, meta jsonb, created timestamptz
);
insert into documents (title, body, meta, created)
select 'document ' || g,
       (select string_agg(md5((g * 100 + i)::text), ' ') from generate_series(1, 20) i),
       jsonb_build_object('g', g, 'score', (g * 37) % 1000),
       now() - g * interval '1 second'
from generate_series(1, {rows}) g;
"""


@pytest.fixture(scope="session")
def big_db(pg: PgCluster) -> str:
    """A database `big` of about 80 MB of poorly compressible text: a dump takes seconds."""
    pg.psql("create database big")
    pg.psql(BIG_SQL.format(rows=60000), "big")
    return "big"


@pytest.fixture()
def small_fs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mount a real small filesystem (tmpfs of the given MiB) under tmp_path; needs root."""
    if os.geteuid() != 0:
        pytest.fail("mounting a small filesystem needs root")
    mounts: list[Path] = []

    def mount(mebibytes: int) -> Path:
        point = tmp_path / f"small{len(mounts)}"
        point.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={mebibytes}m,mode=0700", "tmpfs", str(point)],
            check=True,
        )
        mounts.append(point)
        return point

    try:
        yield mount
    finally:
        for point in mounts:
            subprocess.run(["umount", "-l", str(point)], check=True)


def free_bytes(path: Path) -> int:
    """Bytes free on the filesystem holding `path`."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def partial_dump_growing(backup_dir: Path) -> bool:
    """Whether a PostgreSQL dump (a file or a folder of files) is being written and has
    passed 1 MiB."""
    written = 0
    for dump in (backup_dir / "postgres").glob("*.partial/dump"):
        paths = [dump] if dump.is_file() else list(dump.rglob("*"))
        for path in paths:
            try:
                written += path.stat().st_size if path.is_file() else 0
            except FileNotFoundError:
                continue
    return written > (1 << 20)


class Notifications:
    """A unix datagram socket standing where systemd's notify socket would be."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.received

    def seen(self, message: str) -> bool:
        return message in self.drain()


@pytest.fixture()
def notifications(tmp_path: Path) -> Iterator[Notifications]:
    box = Notifications(tmp_path / "notify.sock")
    try:
        yield box
    finally:
        box.sock.close()


def start_agent(config: Path, notify: Notifications, watchdog_usec: int = 1_000_000,
                env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`socle-agent run` as systemd would start it, with a watchdog."""
    env = dict(env or os.environ, NOTIFY_SOCKET=str(notify.path),
               WATCHDOG_USEC=str(watchdog_usec))
    return subprocess.Popen([AGENT, "--config", str(config), "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running_agent(config: Path, notify: Notifications, env: dict[str, str] | None = None
                  ) -> Iterator[subprocess.Popen[str]]:
    """`socle-agent run` for the block; killed afterwards if the block did not stop it."""
    agent = start_agent(config, notify, env=env)
    try:
        yield agent
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
