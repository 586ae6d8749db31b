"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb, pg_ctl, psql.

Made with initdb in a temporary directory and run by pg_ctl with its socket in that
directory and TCP on a free port of 127.0.0.1; as root it runs as the `postgres`
system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

PG_BIN = Path(os.environ.get("SOCLE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER_PASSWORD = "s3cret:with\\odd chars"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_cluster_owner() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PgCluster:
    """A throwaway PostgreSQL cluster: initdb, start, stop, psql."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "sock"
        self.port = free_port()
        self.user = "postgres"
        self.password = SUPERUSER_PASSWORD
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (base, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        pwfile = base / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        self._run(
            str(PG_BIN / "initdb"),
            "-D", str(self.data),
            "-U", self.user,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "-E", "UTF8",
            "--locale=C",
        )
        pwfile.unlink()
        self.start()

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_as_cluster_owner(), *argv], check=True, capture_output=True, text=True
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c shared_buffers=64MB -c max_connections=30"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"),
            "-o", options, "-w", "-t", "60", "start",
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through the socket as the superuser; returns unaligned output."""
        done = subprocess.run(
            [
                str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user,
                "-d", database, "-c", sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def database_exists(self, name: str) -> bool:
        """Whether a database of that name exists."""
        found = self.psql(f"select count(*) from pg_database where datname = '{name}'")
        return found == "1"

    def row_count(self, database: str, table: str) -> int:
        """Rows in `table` of `database`."""
        return int(self.psql(f"select count(*) from {table}", database))

    def destroy(self) -> None:
        """Stop if running and delete everything."""
        subprocess.run(
            [*_as_cluster_owner(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m",
             "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)
