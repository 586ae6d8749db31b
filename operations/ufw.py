"""Manage the UFW firewall: default policies, the exact set of rules, and whether it runs."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.ufw_state import UfwStatus

_ACTIONS = ("allow", "deny", "reject", "limit")
_POLICIES = ("allow", "deny", "reject")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.=+-]{1,15}$")


@dataclass(frozen=True)
class UfwRule:
    """One UFW rule, written out by ``command()`` exactly as ``ufw show added`` prints it.

    + port: destination port (``None`` for any port)
    + proto: ``tcp``, ``udp`` or ``None`` for any protocol
    + interface: incoming interface (``in on <interface>``), ``None`` for any
    + to: destination network, ``None`` for any
    + route: a forwarding rule (``ufw route ...``) instead of one for this host
    + action: ``allow``, ``deny``, ``reject`` or ``limit``
    """

    port: int | None = None
    proto: str | None = None
    interface: str | None = None
    to: str | None = None
    route: bool = False
    action: str = "allow"

    def command(self) -> str:
        """Return the rule in UFW's canonical form, e.g. ``allow 22/tcp``.

        Raises ``ValueError`` for a rule UFW would not accept.
        """
        self._validate()
        prefix = "route " if self.route else ""
        if self.interface is None and self.to is None and self.port is not None:
            short = f"{self.action} {self.port}"
            if self.proto is not None:
                short += f"/{self.proto}"
            return prefix + short
        words = [self.action]
        if self.interface is not None:
            words += ["in", "on", self.interface]
        if self.to is not None or self.port is not None:
            words += ["to", self.to or "any"]
            if self.port is not None:
                words += ["port", str(self.port)]
        if self.interface is None and self.to is None and self.port is None:
            words += ["to", "any"]
        if self.proto is not None:
            words += ["proto", self.proto]
        return prefix + " ".join(words)

    def _validate(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"invalid UFW action: {self.action!r}")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"invalid port: {self.port!r}")
        if self.proto not in (None, "tcp", "udp"):
            raise ValueError(f"invalid protocol: {self.proto!r}")
        if self.interface is not None and not _INTERFACE.match(self.interface):
            raise ValueError(f"invalid interface name: {self.interface!r}")
        if self.to is not None:
            network = ipaddress.ip_network(self.to, strict=True)
            if str(network) != self.to:
                raise ValueError(f"network not in canonical form: {self.to!r}")


# Every `ufw` command pays ~150 ms of start-up and checks; this program makes all the
# changes in one process through ufw's own front end, exactly as /usr/sbin/ufw does for
# one command (same parser, same actions, same lock). The front end is the same in
# ufw 0.36 on Debian 12 and Ubuntu 24.04. ufw checks the ownership of the program it
# runs as (sys.argv[0]), so that is /usr/sbin/ufw here too.
UFW_BATCH_PROGRAM = """\
import gettext, shlex, sys
import ufw.frontend
from ufw.common import UFWError
from ufw.util import create_lock, release_lock
gettext.install("ufw")
commands, sys.argv[:] = sys.argv[1:], ["/usr/sbin/ufw"]
lock = create_lock(lockfile="/run/ufw.lock", dryrun=False)
try:
    ui = ufw.frontend.UFWFrontend(False)
    for command in commands:
        parsed = ufw.frontend.parse_command(["ufw"] + shlex.split(command))
        rule = parsed.data.get("rule", "")
        iptype = parsed.data.get("iptype", "") if rule else ""
        print("ufw " + command + ": " + ui.do_action(parsed.action, rule, iptype, parsed.force))
except UFWError as error:
    sys.exit("ufw: " + error.value)
finally:
    release_lock(lock)
"""


def _delete(rule: str) -> str:
    words = rule.split()
    if words[0] == "route":
        return " ".join(["route", "delete", *words[1:]])
    return "delete " + rule


def _allows_public_tcp(rules: Iterable[str], port: int) -> bool:
    return f"allow {port}/tcp" in rules or f"limit {port}/tcp" in rules or f"allow {port}" in rules


@operation()
def firewall(
    rules: list[UfwRule],
    incoming: str = "deny",
    outgoing: str = "allow",
    routed: str = "deny",
    enabled: bool = True,
    exclusive: bool = True,
    ssh_port: int = 22,
) -> Generator[StringCommand, None, None]:
    """
    Make UFW's default policies and rules exactly what is given, then enable it.

    + rules: the rules that must exist, as ``UfwRule`` values
    + incoming: default policy for incoming traffic (``deny``, ``allow`` or ``reject``)
    + outgoing: default policy for outgoing traffic
    + routed: default policy for forwarded traffic
    + enabled: whether UFW should be running (and started at boot)
    + exclusive: delete rules that are not in ``rules``
    + ssh_port: refuse to enable the firewall unless this TCP port is allowed publicly

    Missing rules are added before the policies change and before rules are deleted,
    so an active firewall never passes through a state that drops SSH. Enabling a
    firewall whose rules do not allow ``ssh_port`` from anywhere is refused before
    any command runs. All changes are made by one process through ufw's own front end
    (the commands are those of the ``ufw`` command line, in order).

    **Example:**

    .. code:: python

        ufw.firewall(
            name="Public surface: SSH, HTTP(S), WireGuard",
            rules=[
                UfwRule(port=22, proto="tcp"),
                UfwRule(port=443, proto="tcp"),
                UfwRule(port=51820, proto="udp"),
                UfwRule(port=6443, proto="tcp", interface="wg0"),
                UfwRule(route=True, interface="wg0", to="10.42.0.0/16"),
            ],
        )
    """
    for label, policy in (("incoming", incoming), ("outgoing", outgoing), ("routed", routed)):
        if policy not in _POLICIES:
            raise OperationValueError(f"invalid {label} policy: {policy!r}")
    try:
        wanted = [rule.command() for rule in rules]
    except ValueError as error:
        raise OperationValueError(str(error)) from error
    if enabled and incoming != "allow" and not _allows_public_tcp(wanted, ssh_port):
        raise OperationValueError(
            f"refusing to enable UFW: no rule allows the SSH port {ssh_port}/tcp",
        )

    state = host.get_fact(UfwStatus)
    present = list(state["rules"])
    current = {
        "incoming": state["incoming"],
        "outgoing": state["outgoing"],
        "routed": state["routed"],
    }
    changes = [rule for rule in wanted if rule not in present]
    for label, policy in (("incoming", incoming), ("outgoing", outgoing), ("routed", routed)):
        if current[label] != policy:
            changes.append(f"default {policy} {label}")
    if exclusive:
        changes += [_delete(rule) for rule in present if rule not in wanted]
    if enabled and not (state["active"] and state["enabled"]):
        changes.append("--force enable")
    elif not enabled and (state["active"] or state["enabled"]):
        changes.append("disable")

    if not changes:
        host.noop("UFW policies, rules and status are as wanted")
        return
    yield StringCommand(
        "python3", "-c", QuoteString(UFW_BATCH_PROGRAM), *(QuoteString(c) for c in changes)
    )
