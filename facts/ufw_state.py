"""Read the state of UFW: whether it is enabled, its default policies and its rules."""

from __future__ import annotations

from typing import TypedDict

from pyinfra.api import FactBase
from typing_extensions import override

# /etc/default/ufw speaks iptables' language; `ufw default` speaks its own.
_POLICY_NAMES = {"DROP": "deny", "ACCEPT": "allow", "REJECT": "reject"}
_POLICY_KEYS = {
    "DEFAULT_INPUT_POLICY": "incoming",
    "DEFAULT_OUTPUT_POLICY": "outgoing",
    "DEFAULT_FORWARD_POLICY": "routed",
}


class UfwState(TypedDict):
    """What UFW is doing now and what it will do after a reboot."""

    active: bool
    enabled: bool
    incoming: str | None
    outgoing: str | None
    routed: str | None
    rules: list[str]


class UfwStatus(FactBase[UfwState]):
    """
    Returns UFW's running status, boot-time setting, default policies and user rules.

    Rules are given in UFW's own canonical command form (what ``ufw show added``
    prints, without the leading ``ufw``), so they can be compared with the rules an
    operation wants and removed with ``ufw delete``. They are listed whether or not
    the firewall is active.

    .. code:: python

        {
            "active": True,
            "enabled": True,
            "incoming": "deny",
            "outgoing": "allow",
            "routed": "deny",
            "rules": [
                "allow 22/tcp",
                "allow in on wg0 to any port 6443 proto tcp",
                "route allow in on wg0 to 10.42.0.0/16",
            ],
        }
    """

    @override
    def requires_command(self, *args, **kwargs) -> str:
        return "ufw"

    @override
    @staticmethod
    def default() -> UfwState:
        return {
            "active": False,
            "enabled": False,
            "incoming": None,
            "outgoing": None,
            "routed": None,
            "rules": [],
        }

    @override
    def command(self) -> str:
        return (
            "ufw status | head -n 1; "
            "grep -h -E '^(ENABLED|DEFAULT_(INPUT|OUTPUT|FORWARD)_POLICY)=' "
            "/etc/ufw/ufw.conf /etc/default/ufw; "
            "ufw show added"
        )

    @override
    def process(self, output: list[str]) -> UfwState:
        state = self.default()
        for raw_line in output:
            line = raw_line.strip()
            if line.startswith("Status:"):
                state["active"] = line.split(":", 1)[1].strip() == "active"
            elif line.startswith("ENABLED="):
                state["enabled"] = _unquote(line.split("=", 1)[1]) == "yes"
            elif line.startswith("DEFAULT_"):
                key, _, value = line.partition("=")
                policy = _POLICY_NAMES.get(_unquote(value))
                if key in _POLICY_KEYS:
                    state[_POLICY_KEYS[key]] = policy  # type: ignore[literal-required]
            elif line.startswith("ufw "):
                state["rules"].append(line[len("ufw ") :])
        return state


def _unquote(value: str) -> str:
    return value.strip().strip('"').strip("'")
