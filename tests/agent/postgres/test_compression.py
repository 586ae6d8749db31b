"""The compression pg_dump is asked for, read against what that pg_dump supports."""

from __future__ import annotations

import pytest
from socle_agent.postgres.compression import Compression, choose
from socle_agent.postgres.connection import PostgresError

PG15 = "pg_dump (PostgreSQL) 15.14"
PG16 = "pg_dump (PostgreSQL) 16.4 (Ubuntu 16.4-1)"


def never(method: str) -> bool:
    return False


def always(method: str) -> bool:
    return True


def test_auto_with_a_gzip_only_pg_dump_is_gzip_3_in_its_old_syntax() -> None:
    assert choose("auto", PG15, always) == Compression("3", "gzip:3")


def test_auto_with_a_pg_dump_built_with_zstd_is_zstd_1() -> None:
    assert choose("auto", PG16, always) == Compression("zstd:1", "zstd:1")


def test_auto_with_a_pg_dump_16_built_without_zstd_is_gzip_3() -> None:
    assert choose("auto", PG16, never) == Compression("gzip:3", "gzip:3")


def test_settings_are_translated_for_each_pg_dump() -> None:
    assert choose("none", PG15, never) == Compression("0", "none")
    assert choose("gzip:9", PG15, never) == Compression("9", "gzip:9")
    assert choose("gzip", PG15, never) == Compression("6", "gzip:6")
    assert choose("lz4:4", PG16, always) == Compression("lz4:4", "lz4:4")


def test_a_method_the_pg_dump_lacks_is_refused_naming_the_setting() -> None:
    with pytest.raises(PostgresError, match="pg_dump 15 supports only gzip, not zstd"):
        choose("zstd:3", PG15, always)
    with pytest.raises(PostgresError, match="built without lz4"):
        choose("lz4", PG16, never)
