"""Manage the UFW firewall: default policies, the exact set of rules, and whether it runs."""

from __future__ import annotations

from collections.abc import Generator, Iterable

from pyinfra import host
from pyinfra.api import OperationValueError, QuoteString, StringCommand, operation

from facts.ufw_state import UfwStatus
from socle.ufw_rules import UfwRule

_POLICIES = ("allow", "deny", "reject")


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
