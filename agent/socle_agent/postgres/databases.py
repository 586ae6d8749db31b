"""Databases on the server: which to back up, their sizes and row counts, made and dropped.

Databases the agent makes for itself (a drill's scratch copy, a restore in progress)
carry a comment that says so. A drill drops only a database with its mark, never one
that merely has the scratch name, and `databases = []` never backs one up.

Example:

    with admin_connect(context, connection) as admin:
        make_marked(admin, "socle_drill_app", SCRATCH_MARK)
        ...
        drop_marked(admin, "socle_drill_app", SCRATCH_MARK)
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from socle_agent.postgres.connection import PostgresError

SCRATCH_MARK = "socle-agent: drill scratch database"
STAGING_MARK = "socle-agent: restore in progress"
NAME_BYTES = 63  # PostgreSQL cuts identifiers longer than this


class NotOurs(PostgresError):
    """A database has the name the agent wanted for its own use, but not the agent's mark."""


def fit_name(name: str, limit: int = NAME_BYTES) -> str:
    """`name` cut to what PostgreSQL keeps of an identifier (bytes, on a character boundary).

    >>> fit_name("x" * 70) == "x" * 63
    True
    """
    encoded = name.encode("utf-8")[:limit]
    return encoded.decode("utf-8", "ignore")


def list_databases(conn: psycopg.Connection[Any]) -> list[str]:
    """Databases worth dumping: every one that accepts connections, but templates,
    `postgres` and the agent's own scratch and staging databases."""
    rows = conn.execute(
        "select datname from pg_database where datallowconn and not datistemplate"
        " and datname <> 'postgres'"
        " and coalesce(shobj_description(oid, 'pg_database'), '') not in (%s, %s)"
        " order by datname",
        (SCRATCH_MARK, STAGING_MARK),
    ).fetchall()
    return [row[0] for row in rows]


def table_bytes(conn: psycopg.Connection[Any]) -> int:
    """Bytes the tables of the connected database take (with TOAST, without indexes):
    what a dump holds, before compression. The system catalogs are left out."""
    row = conn.execute(
        "select coalesce(sum(pg_table_size(c.oid)), 0) from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where c.relkind in ('r', 'm') and n.nspname not in ('pg_catalog', 'information_schema')"
        " and n.nspname not like 'pg_toast%'"
    ).fetchone()
    return int(row[0]) if row else 0


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Exact row count of every ordinary table outside the system schemas."""
    tables = conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')"
        " and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'"
        " order by 1, 2"
    ).fetchall()
    counts = {}
    for schema, table in tables:
        query = sql.SQL("select count(*) from {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def mark_of(conn: psycopg.Connection[Any], name: str) -> str | None:
    """The comment of database `name`: "" without one, None when there is no such database."""
    row = conn.execute(
        "select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database"
        " where datname = %s",
        (name,),
    ).fetchone()
    return None if row is None else str(row[0])


def exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """Whether the server has a database called `name`."""
    return mark_of(conn, name) is not None


def set_mark(conn: psycopg.Connection[Any], name: str, mark: str | None) -> None:
    """Set (or, with None, remove) the comment marking database `name`."""
    conn.execute(
        sql.SQL("comment on database {} is {}").format(
            sql.Identifier(name), sql.Literal(mark) if mark is not None else sql.SQL("null")
        )
    )


def make_marked(conn: psycopg.Connection[Any], name: str, mark: str) -> None:
    """Create an empty database `name` from template0, marked as the agent's own.

    A leftover with the same mark (a killed drill) is dropped first; any other database
    of that name is refused with NotOurs and left alone. `conn` is in autocommit mode.
    """
    drop_marked(conn, name, mark)
    conn.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
    set_mark(conn, name, mark)


def drop_marked(conn: psycopg.Connection[Any], name: str, mark: str) -> None:
    """Drop database `name` if it exists and carries `mark`; refuse (NotOurs) if unmarked."""
    found = mark_of(conn, name)
    if found is None:
        return
    if found != mark:
        raise NotOurs(
            f"database {name!r} exists and was not made by the agent (its comment is "
            f"{found!r}, not {mark!r}): refusing to drop it; choose another drill.scratch_prefix"
        )
    drop(conn, name)


def drop(conn: psycopg.Connection[Any], name: str) -> None:
    """Drop database `name` if it exists, disconnecting its sessions."""
    conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
