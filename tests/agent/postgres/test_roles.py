"""Replaying globals.sql the safe way: only missing roles created, existing ones untouched."""

from __future__ import annotations

from socle_agent.postgres.roles import plan_roles, unquote

GLOBALS = '''
--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:old';
CREATE ROLE "Report ""Team""";
ALTER ROLE "Report ""Team""" WITH NOLOGIN;
ALTER ROLE "Report ""Team""" SET search_path TO reports;
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:root';
GRANT "Report ""Team""" TO app GRANTED BY postgres;
GRANT app TO postgres GRANTED BY postgres;
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';
'''


def test_unquote_reads_quoted_identifiers() -> None:
    assert unquote('"Report ""Team"""') == 'Report "Team"'
    assert unquote("app") == "app"


def test_existing_roles_are_left_alone_and_missing_ones_created_with_their_memberships() -> None:
    plan = plan_roles(GLOBALS, existing_roles={"app", "postgres"}, existing_spaces={"fast"})

    assert plan.created == ['Report "Team"']
    assert plan.left_alone == ["app", "postgres"]
    assert plan.passwords_reset == []
    assert "PASSWORD" not in plan.script
    assert 'ALTER ROLE "Report ""Team""" SET search_path TO reports;' in plan.script
    # app exists: a membership given to it would change it
    assert "GRANT" not in plan.script
    assert "TABLESPACE" not in plan.script


def test_a_missing_member_gets_its_memberships_and_a_missing_tablespace_is_created() -> None:
    plan = plan_roles(GLOBALS, existing_roles={"postgres"}, existing_spaces=set())

    assert plan.created == ["app", 'Report "Team"']
    assert "ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN PASSWORD" in plan.script
    assert 'GRANT "Report ""Team""" TO app GRANTED BY postgres;' in plan.script
    assert "GRANT app TO postgres" not in plan.script
    assert plan.tablespaces == ["fast"]


def test_resetting_passwords_sets_only_passwords_and_never_the_agents_own() -> None:
    plan = plan_roles(GLOBALS, existing_roles={"app", "postgres", 'Report "Team"'},
                      existing_spaces={"fast"}, reset_passwords=True,
                      never_reset=frozenset({"postgres"}))

    assert plan.passwords_reset == ["app"]
    assert "ALTER ROLE app WITH PASSWORD 'SCRAM-SHA-256$4096:old';" in plan.script
    assert "NOSUPERUSER" not in plan.script and "root" not in plan.script
