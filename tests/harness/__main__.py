"""Bring test hosts up and down by hand.

    python -m tests.harness up node peer     # start hosts, write .testhosts/hosts.json
    pyinfra inventories/test.py deploys/baseline.py
    python -m tests.harness status
    python -m tests.harness down             # remove the hosts started with `up`
"""

from __future__ import annotations

import argparse
import json
import sys

from tests.harness.engine import connect_engine
from tests.harness.errors import HarnessError
from tests.harness.hosts import (
    DEFAULT_CACHE_DIR,
    LABEL,
    MANUAL_LABEL,
    Harness,
    remove_resources,
)

HOSTS_FILE = DEFAULT_CACHE_DIR / "hosts.json"


def _up(names: list[str], networks: list[str]) -> int:
    harness = Harness(detached=True)
    try:
        hosts = [harness.start(name, networks=tuple(networks)) for name in names]
    except BaseException:
        harness.close()
        raise
    harness.write_hosts_file(HOSTS_FILE, hosts)
    for host in hosts:
        print(f"{host.name}\t{host.address}\tssh -i {host.key_path} {host.user}@{host.address}")
    print(f"hosts file: {HOSTS_FILE}  (pyinfra inventories/test.py deploys/<phase>.py)")
    return 0


def _down(everything: bool) -> int:
    # Hosts of a running test session are left alone unless --all is given.
    labels = {LABEL: "1"} if everything else {LABEL: "1", MANUAL_LABEL: "1"}
    removed = remove_resources(connect_engine(), labels)
    HOSTS_FILE.unlink(missing_ok=True)
    print(f"removed {len(removed)} test containers and networks")
    return 0


def _status() -> int:
    client = connect_engine()
    containers = client.containers.list(all=True, filters={"label": [f"{LABEL}=1"]})
    for container in containers:
        print(f"{container.name}\t{container.status}")
    if HOSTS_FILE.exists():
        print(json.dumps(json.loads(HOSTS_FILE.read_text()), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run `up`, `down` or `status`."""
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start test hosts and write the hosts file")
    up.add_argument("names", nargs="*", default=["node"], help="host names (default: node)")
    up.add_argument("--network", action="append", dest="networks",
                    help="network(s) to attach, first is the host's address (default: public)")
    down = commands.add_parser("down", help="remove the hosts started with `up`")
    down.add_argument("--all", action="store_true", dest="everything",
                      help="also remove hosts of test runs (leaked after a crash)")
    commands.add_parser("status", help="list test hosts")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return _up(args.names, args.networks or ["public"])
        if args.command == "down":
            return _down(args.everything)
        return _status()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
