"""The inventory's agent settings and secrets, checked on the operator's machine."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from socle.agent_settings import AgentSettingsError, agent_secrets, render_agent_config
from tests.sops_files import write_sops_file

GOOD = {
    "postgres": {"host": "127.0.0.1", "databases": ["app"]},
    "metrics": {"listen": "10.8.0.1", "port": 9464},
    "drill": {"rto_seconds": {"postgres": 600}},
}


def test_render_agent_config_round_trips_through_toml() -> None:
    text = render_agent_config(GOOD)

    assert text.startswith("# Managed by socle")
    assert tomllib.loads(text) == GOOD


def test_render_agent_config_names_the_inventory_key_of_each_problem() -> None:
    bad = {"retention": {"keep_dialy": 7}, "metrics": {"port": "x"}}

    with pytest.raises(AgentSettingsError) as error:
        render_agent_config(bad)

    message = str(error.value)
    assert "agent_settings.retention.keep_dialy: unknown key" in message
    assert "agent_settings.metrics.port" in message


def test_render_agent_config_refuses_a_non_table() -> None:
    with pytest.raises(AgentSettingsError, match="agent_settings: expected a table"):
        render_agent_config(["postgres"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("x", "agent_secrets: expected a list"),
        (["x"], r"agent_secrets\[0\]: expected a table"),
        ([{"path": "/etc/socle/a", "sops_file": "s"}], r"agent_secrets\[0\].key: required"),
        ([{"path": "/etc/socle/a", "sops_file": "s", "key": "k", "mode": "644"}],
         r"agent_secrets\[0\].mode: unknown key"),
        ([{"path": "/root/a", "sops_file": "s", "key": "k"}],
         r"agent_secrets\[0\].path: secrets live under /etc/socle/"),
        ([{"path": "/etc/socle/a", "sops_file": "s", "key": "k"},
          {"path": "/etc/socle/a", "sops_file": "s", "key": "j"}],
         r"agent_secrets\[1\].path: /etc/socle/a is given twice"),
    ],
)  # fmt: skip
def test_agent_secrets_checks_every_entry_before_decrypting(entries: object, message: str) -> None:
    with pytest.raises(AgentSettingsError, match=message):
        agent_secrets(entries)


def test_agent_secrets_decrypts_each_value_from_sops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sops_file, key_file = write_sops_file(tmp_path, {"pg": "s3cret-pg", "mail": "s3cret-mail"})
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    entries = [
        {"path": "/etc/socle/postgres-password", "sops_file": str(sops_file), "key": "pg"},
        {"path": "/etc/socle/mail-password", "sops_file": str(sops_file), "key": "mail"},
    ]

    assert agent_secrets(entries) == {
        "/etc/socle/postgres-password": "s3cret-pg",
        "/etc/socle/mail-password": "s3cret-mail",
    }


def test_agent_secrets_reports_a_missing_key_without_the_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sops_file, key_file = write_sops_file(tmp_path, {"pg": "s3cret-pg"})
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    entries = [{"path": "/etc/socle/x", "sops_file": str(sops_file), "key": "absent"}]

    with pytest.raises(AgentSettingsError, match="cannot decrypt 'absent'") as error:
        agent_secrets(entries)
    assert "s3cret" not in str(error.value)
