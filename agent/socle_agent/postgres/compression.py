"""Which compression pg_dump is asked for: the setting, read against what it supports.

pg_dump 16 and later know gzip, lz4 and zstd (`--compress=zstd:1`); pg_dump 15 knows
only gzip levels (`--compress=3`). "auto", the default, is the fast choice the installed
pg_dump supports: zstd at level 1 where it is built in (about as small as gzip 6, many
times faster), otherwise gzip at level 3. Measured here on 1.1 GB of realistic data
(bench/agent_backup.py, pg_dump 15, two workers): gzip 1 took 0.39x the time of a
plain `pg_dump -Fc` but wrote 1.14x its size; gzip 3 took 0.43x and wrote 1.09x.

Example:

    choose("auto", pg_dump_version="pg_dump (PostgreSQL) 15.14", probe=lambda m: False)
    # Compression(argument="3", described="gzip:3")
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from socle_agent.postgres.connection import PostgresError

_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")
AUTO_GZIP_LEVEL = 3
# connecting to a socket folder that cannot exist fails at once; an unsupported
# compression is refused before pg_dump tries
_NOWHERE = "host=/nonexistent/socle-probe dbname=probe connect_timeout=1"


@dataclass(frozen=True)
class Compression:
    """The value given to `pg_dump --compress`, and the method:level it means."""

    argument: str
    described: str


def major_version(pg_dump_version: str) -> int:
    """16 for "pg_dump (PostgreSQL) 16.4"."""
    found = _VERSION.search(pg_dump_version)
    if not found:
        raise PostgresError(f"cannot read pg_dump's version from {pg_dump_version!r}")
    return int(found.group(1))


def choose(setting: str, pg_dump_version: str, probe: Callable[[str], bool]) -> Compression:
    """The compression to use for `setting` with this pg_dump; refuses what it cannot do.

    `probe(method)` tells whether this pg_dump build supports lz4 or zstd.
    """
    major = major_version(pg_dump_version)
    if setting == "auto":
        if major >= 16 and probe("zstd"):
            return Compression("zstd:1", "zstd:1")
        setting = f"gzip:{AUTO_GZIP_LEVEL}"
    if setting == "none":
        return Compression("0", "none")
    method, _, level = setting.partition(":")
    if major < 16:
        if method != "gzip":
            raise PostgresError(
                f"postgres.compression: pg_dump {major} supports only gzip, not {method} "
                '(use "auto" or "gzip:LEVEL")'
            )
        return Compression(level or "6", f"gzip:{level or 6}")
    if method != "gzip" and not probe(method):
        raise PostgresError(f"postgres.compression: this pg_dump is built without {method}")
    return Compression(setting, setting)


def probe_with(pg_dump: str) -> Callable[[str], bool]:
    """A `probe` asking the pg_dump at `pg_dump` whether it accepts a compression method."""

    def probe(method: str) -> bool:
        done = subprocess.run(
            [pg_dump, f"--compress={method}:1", "--format=custom", "--file=/dev/null",
             "--dbname", _NOWHERE],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return "compress" not in done.stderr.lower()

    return probe
