"""Inventory of the test hosts the harness has up (`python -m tests.harness up`).

The hosts file is `$SOCLE_TEST_HOSTS`, or `.testhosts/hosts.json` in the repository.
Each host is reached as production is: over SSH as `ubuntu`, with sudo.

    pyinfra inventories/test.py deploys/baseline.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_DEFAULT_HOSTS_FILE = Path(__file__).resolve().parent.parent / ".testhosts" / "hosts.json"


def _load_test_hosts() -> list[tuple[str, dict[str, Any]]]:
    hosts_file = Path(os.environ.get("SOCLE_TEST_HOSTS", _DEFAULT_HOSTS_FILE))
    if not hosts_file.exists():
        raise SystemExit(
            f"no test hosts: {hosts_file} does not exist. "
            "Start some with `python -m tests.harness up`."
        )
    entries = json.loads(hosts_file.read_text())["hosts"]
    hosts = []
    for entry in entries:
        data: dict[str, Any] = {
            "ssh_hostname": entry["address"],
            "ssh_user": entry["user"],
            "ssh_key": entry["key"],
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "no",
            "_sudo": True,
            "test_addresses": entry.get("addresses", {}),
        }
        # This machine plays the operator's: never banned for the tests' failed logins.
        if entry.get("operator_address"):
            data["ssh_never_ban"] = [entry["operator_address"]]
        data.update(entry.get("data", {}))
        hosts.append((entry["name"], data))
    return hosts


test = _load_test_hosts()
