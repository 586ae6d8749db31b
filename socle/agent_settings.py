"""Turn the inventory's agent settings into the agent's configuration file, checked first.

The agent's own parser (``socle_agent.config``) validates the settings on the operator's
machine, so a typo stops the deploy before anything on the node changes, with the
inventory key that holds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomli_w
from socle_agent.config import ConfigError, parse_config

from socle.sops_secrets import SopsError, decrypt_value


class AgentSettingsError(ValueError):
    """The inventory's agent settings are not a valid agent configuration."""


def render_agent_config(settings: Mapping[str, Any], inventory_key: str = "agent_settings") -> str:
    """Return the agent's TOML configuration for ``settings``, or raise naming the bad keys.

    >>> print(render_agent_config({"metrics": {"listen": "10.8.0.1", "port": 9464}}))
    [metrics]
    listen = "10.8.0.1"
    port = 9464
    <BLANKLINE>
    """
    if not isinstance(settings, Mapping):
        raise AgentSettingsError(f"{inventory_key}: expected a table of agent settings")
    try:
        # Paths are checked by the agent on the node (ExecStartPre); here only the shape.
        parse_config(settings, check_paths=False)
    except ConfigError as error:
        problems = "; ".join(f"{inventory_key}.{problem}" for problem in error.problems)
        raise AgentSettingsError(f"invalid agent settings: {problems}") from None
    try:
        return "# Managed by socle (deploys/agent.py): edit the inventory, not this file.\n" + (
            tomli_w.dumps(dict(settings))
        )
    except TypeError as error:
        raise AgentSettingsError(f"{inventory_key}: {error}") from None


def agent_secrets(
    entries: Any, inventory_key: str = "agent_secrets"
) -> dict[str, str]:
    """Decrypt the agent's secrets named by the inventory: ``{path on the node: value}``.

    Each entry names the file on the node, the SOPS file and the key inside it; the shape
    is checked for every entry before anything is decrypted.

    >>> agent_secrets([{"path": "/etc/socle/postgres-password",
    ...                 "sops_file": "secrets/prod.sops.yaml", "key": "postgres_password"}])
    ... # doctest: +SKIP
    {'/etc/socle/postgres-password': '...'}
    """
    if not isinstance(entries, list):
        raise AgentSettingsError(f"{inventory_key}: expected a list of secret files")
    wanted = ("path", "sops_file", "key")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{inventory_key}[{index}]"
        if not isinstance(entry, Mapping):
            raise AgentSettingsError(f"{where}: expected a table with {', '.join(wanted)}")
        unknown = sorted(set(entry) - set(wanted))
        if unknown:
            raise AgentSettingsError(f"{where}.{unknown[0]}: unknown key")
        for key in wanted:
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise AgentSettingsError(f"{where}.{key}: required, a non-empty string")
        if not entry["path"].startswith("/etc/socle/"):
            raise AgentSettingsError(f"{where}.path: secrets live under /etc/socle/")
        if entry["path"] in seen:
            raise AgentSettingsError(f"{where}.path: {entry['path']} is given twice")
        seen.add(entry["path"])
    try:
        return {e["path"]: decrypt_value(e["sops_file"], e["key"]) for e in entries}
    except SopsError as error:
        raise AgentSettingsError(f"{inventory_key}: {error}") from None
