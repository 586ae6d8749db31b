"""`socle maintenance start|end` and `socle alert test`: Alertmanager over the VPN.

Alertmanager answers on the node's VPN address (port 9093); the commands find it from the
inventory (`--inventory inventories/prod.py`, the VPN address in `wireguard_address`) or
take its URL (`--alertmanager http://10.8.0.1:9093`).

    socle maintenance start --for 30m --reason "kernel upgrade" --inventory inventories/prod.py
    socle maintenance end --inventory inventories/prod.py
    socle alert test --inventory inventories/prod.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import socket
import sys
from pathlib import Path

from socle.alertmanager_api import (
    AlertmanagerApi,
    AlertmanagerError,
    is_maintenance,
    maintenance_silence,
    manual_test_alert,
    parse_window,
)

ALERTMANAGER_PORT = 9093


def alertmanager_url(args: argparse.Namespace) -> str:
    """--alertmanager, else http://<the inventory's VPN address>:9093."""
    if args.alertmanager:
        return str(args.alertmanager)
    if not args.inventory:
        raise ValueError("say where Alertmanager is: --inventory FILE or --alertmanager URL")
    from socle.inventory_checks import vpn_interface
    from socle_cli.wireguard_client import load_hosts

    hosts = load_hosts(Path(args.inventory))
    if args.host:
        if args.host not in hosts:
            raise ValueError(f"no host {args.host!r} in {args.inventory}")
        hosts = {args.host: hosts[args.host]}
    addresses = {
        str(vpn_interface(data).ip) for data in hosts.values() if "wireguard_address" in data
    }
    if len(addresses) != 1:
        raise ValueError(
            f"{args.inventory}: expected one host with wireguard_address, found "
            f"{len(addresses)} (use --host or --alertmanager)"
        )
    return f"http://{addresses.pop()}:{ALERTMANAGER_PORT}"


def _author() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _run(action: str, args: argparse.Namespace) -> int:
    try:
        api = AlertmanagerApi(alertmanager_url(args))
        if action == "start":
            silence = maintenance_silence(parse_window(args.duration), args.reason, _author())
            silence_id = api.create_silence(silence)
            print(
                f"maintenance until {silence['endsAt']} (silence {silence_id}): no alert mail "
                "but the heartbeat; `socle maintenance end` ends it early"
            )
        elif action == "end":
            active = [s for s in api.silences() if is_maintenance(s)]
            for silence in active:
                api.expire_silence(silence["id"])
            print(
                f"ended {len(active)} maintenance window(s)"
                if active
                else "no maintenance window was active"
            )
        else:
            api.post_alerts([manual_test_alert(_author(), now=dt.datetime.now(dt.UTC))])
            print(
                f"sent {args.command} alert SocleTestAlert to {api.url}: a level-1 mail should "
                "arrive within a minute"
            )
    except (ValueError, AlertmanagerError, OSError) as error:
        print(f"socle: {error}", file=sys.stderr)
        return 1
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `maintenance` and `alert` to the `socle` command line."""

    def where(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--inventory", help="e.g. inventories/prod.py (the VPN address)")
        parser.add_argument("--host", help="the host, when the inventory has several")
        parser.add_argument("--alertmanager", help="Alertmanager's URL, e.g. http://10.8.0.1:9093")

    maintenance = commands.add_parser(
        "maintenance", help="silence alert mail during planned work (Alertmanager silence)"
    )
    sub = maintenance.add_subparsers(dest="maintenance_command")
    start = sub.add_parser(
        "start",
        help="start a maintenance window",
        description="Silence every alert but the Watchdog heartbeat for a while: planned "
        "work sends no mail. The silence expires by itself.",
    )
    start.add_argument("--for", dest="duration", required=True, help="e.g. 30m, 2h, 1h30m")
    start.add_argument("--reason", required=True, help="what is being done, shown in Alertmanager")
    where(start)
    start.set_defaults(handler=lambda args: _run("start", args))
    end = sub.add_parser("end", help="end every maintenance window now")
    where(end)
    end.set_defaults(handler=lambda args: _run("end", args))

    alert = commands.add_parser("alert", help="alerting checks")
    alert_sub = alert.add_subparsers(dest="alert_command")
    test = alert_sub.add_parser(
        "test",
        help="send a level-1 test alert: a mail should arrive",
        description="Send the alert SocleTestAlert (critical, resolving after 5 minutes) "
        "to Alertmanager: the level-1 mail proves the path to the operators.",
    )
    where(test)
    test.set_defaults(handler=lambda args: _run("test", args))
