"""Roles for a restore, from the backup's `globals.sql`, without touching existing roles.

`pg_dumpall --globals-only` writes, for every role, `CREATE ROLE` and an `ALTER ROLE ...
PASSWORD` that would reset the password of a role that exists today to its value at
backup time. Replaying it as a whole would lock out every application whose password
changed since. So the file is read statement by statement: only roles (and tablespaces)
missing on the server are created, with their settings and memberships; existing roles
are left exactly as they are, unless resetting their passwords is asked for explicitly.

Example:

    plan = plan_roles(globals_sql, existing_roles={"postgres", "app"}, existing_spaces=set())
    plan.created      # ["reporting"]
    plan.script       # SQL for psql -v ON_ERROR_STOP=1 --single-transaction
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_IDENT = r'(?:"(?:[^"]|"")+"|[^\s;"]+)'
_CREATE_ROLE = re.compile(rf"^CREATE ROLE ({_IDENT});$")
_ALTER_ROLE = re.compile(rf"^ALTER ROLE ({_IDENT}) ")
_PASSWORD = re.compile(r" PASSWORD ('(?:[^']|'')*'|NULL)")
_COMMENT_ROLE = re.compile(rf"^COMMENT ON ROLE ({_IDENT}) ")
_GRANT_ROLE = re.compile(rf"^GRANT ({_IDENT}) TO ({_IDENT})")
_TABLESPACE = re.compile(rf"^(?:CREATE|ALTER) TABLESPACE ({_IDENT})")
_ON_TABLESPACE = re.compile(rf" ON TABLESPACE ({_IDENT}) ")


def unquote(identifier: str) -> str:
    '''The name an SQL identifier stands for: `"My ""role"""` gives `My "role"`.'''
    if identifier.startswith('"') and identifier.endswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


@dataclass
class RolesPlan:
    """What replaying `globals.sql` the safe way does."""

    script: str = ""
    created: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    passwords_reset: list[str] = field(default_factory=list)
    tablespaces: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def plan_roles(
    globals_sql: str,
    existing_roles: set[str],
    existing_spaces: set[str],
    reset_passwords: bool = False,
    never_reset: frozenset[str] = frozenset(),
) -> RolesPlan:
    """The statements of `globals_sql` to run so that missing roles exist afterwards.

    With `reset_passwords`, existing roles get their password of backup time (and only
    their password), except those in `never_reset` (the role the agent logs in as);
    without it they are not touched at all.
    """
    plan = RolesPlan()
    statements = ["SET client_min_messages = warning;"]
    new_roles: set[str] = set()
    new_spaces: set[str] = set()
    for line in globals_sql.splitlines():
        text = line.strip()
        if not text or text.startswith("--"):
            continue
        if text.startswith("SET "):
            statements.append(text)
        elif match := _CREATE_ROLE.match(text):
            role = unquote(match.group(1))
            if role in existing_roles:
                plan.left_alone.append(role)
            else:
                new_roles.add(role)
                plan.created.append(role)
                statements.append(text)
        elif match := _ALTER_ROLE.match(text):
            role = unquote(match.group(1))
            if role in new_roles:
                statements.append(text)
            elif (reset_passwords and role not in never_reset
                  and (password := _PASSWORD.search(text))):
                statements.append(f"ALTER ROLE {match.group(1)} WITH PASSWORD {password.group(1)};")
                plan.passwords_reset.append(role)
        elif match := _COMMENT_ROLE.match(text):
            if unquote(match.group(1)) in new_roles:
                statements.append(text)
        elif match := _GRANT_ROLE.match(text):
            # a membership given to a role that exists already would change that role
            if unquote(match.group(2)) in new_roles:
                statements.append(text)
        elif match := _TABLESPACE.match(text):
            space = unquote(match.group(1))
            if text.startswith("CREATE") and space not in existing_spaces:
                new_spaces.add(space)
                plan.tablespaces.append(space)
                statements.append(text)
            elif space in new_spaces:
                statements.append(text)
        elif (match := _ON_TABLESPACE.search(text)) and unquote(match.group(1)) in new_spaces:
            statements.append(text)
        else:
            plan.skipped.append(text[:80])
    plan.script = "\n".join(statements) + "\n"
    return plan
