"""The platform node the end-to-end host tests share: every phase deployed once, for real.

`tests/hosts/test_platform.py` (the whole deploy, its no-op re-run, phases 4 to 6, the
reboot) and `tests/hosts/test_verify.py` (`socle verify`, Go then No-Go) use the same
node, so the cold deploy of the whole platform is paid once per run. k3s is the stand-in
(tests/standins/k3s.py), phases 4 to 6 are played from the real charts' renderings
(tests/hosts/platform_node.py), and the node's PostgreSQL is the stand-in the agent's
tests use (a real server on the node).
"""

from __future__ import annotations

import copy
import os
import runpy
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.gitops.conftest import require_render_tools
from tests.harness.hosts import REPO_ROOT, Harness, TestHost
from tests.hosts.admin import connect_admin, new_admin_key, socle_command
from tests.hosts.k3s_node import standin_k3s_data
from tests.hosts.platform_node import (
    GRAFANA_KEY,
    POSTGRESQL_KEY,
    place_renderings,
    platform_node_data,
    renderings,
)
from tests.hosts.probes import SecretSpy
from tests.sops_files import write_sops_file

# Short enough for a test to outlive it with the agent stopped (tests/hosts/test_verify.py).
POSTGRES_RPO_S = 25
# Where a secret could leak to another local user during the deploy.
SPIED_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm", "/home", "/run", "/etc/socle",
                 "/etc/rancher", "/var/lib/rancher/k3s/server/manifests")  # fmt: skip


@dataclass
class PlatformNode:
    """The node with every phase, an admin on the VPN, an outsider, and the first run."""

    harness: Harness
    node: TestHost
    admin: TestHost
    outsider: TestHost
    workdir: Path
    hosts_file: Path
    data: dict[str, Any]
    secrets: dict[str, str]
    key_file: Path
    first_run: subprocess.CompletedProcess[str]
    first_run_seconds: float
    spied: dict[str, Any]

    @contextmanager
    def sops_key(self) -> Iterator[None]:
        """The operator's age key, for the commands that decrypt SOPS files."""
        previous = os.environ.get("SOPS_AGE_KEY_FILE")
        os.environ["SOPS_AGE_KEY_FILE"] = str(self.key_file)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("SOPS_AGE_KEY_FILE", None)
            else:
                os.environ["SOPS_AGE_KEY_FILE"] = previous

    def deploy(self, *args: str, deploy: str = "deploys/all.py",
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """``pyinfra inventories/test.py DEPLOY ARGS -y`` on the node."""
        with self.sops_key():
            return self.harness.run_pyinfra(self.hosts_file, deploy, *args, check=check)

    def socle(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The operator's ``socle`` command on the node's inventory."""
        with self.sops_key():
            return socle_command(self.hosts_file, *args)


def platform_agent_settings() -> dict[str, Any]:
    """The test group's agent settings with a short PostgreSQL RPO and a frequent disk check."""
    group = runpy.run_path(str(REPO_ROOT / "inventories" / "group_data" / "test.py"))
    settings: dict[str, Any] = copy.deepcopy(group["agent_settings"])
    settings["drill"]["rpo_seconds"]["postgres"] = POSTGRES_RPO_S
    # Often enough for a test to see the schedule run after a restart.
    settings["schedule"]["disk_check"] = "every 20 seconds"
    return settings


@pytest.fixture(scope="session")
def deployed(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformNode]:
    """A fresh node given every phase by one run of deploys/all.py, watched by a spy."""
    require_render_tools()
    workdir = tmp_path_factory.mktemp("platform")
    node = harness.start("platform-node")
    admin = harness.start("platform-admin")
    outsider = harness.start("platform-outsider")
    values = {name: secrets.token_urlsafe(24) for name in
              ("postgres_password", GRAFANA_KEY, POSTGRESQL_KEY)}  # fmt: skip
    sops_file, key_file = write_sops_file(workdir, values)
    admin_key, admin_public = new_admin_key(workdir)
    data = platform_node_data(admin_public, values["postgres_password"], sops_file,
                              standin_k3s_data(workdir), agent_settings=platform_agent_settings())
    hosts_file = harness.write_hosts_file(workdir / "hosts.json", [node], data={node.name: data})
    place_renderings(node, renderings(data))
    platform_node = PlatformNode(harness, node, admin, outsider, workdir, hosts_file, data,
                                 values, key_file, subprocess.CompletedProcess([], 0), 0.0, {})
    try:
        platform_node.deploy(deploy="tests/hosts/deploys/postgres_standin.py")
        spy = SecretSpy(node, list(values.values()), SPIED_FOLDERS).start()
        started = time.monotonic()
        platform_node.first_run = platform_node.deploy("--json")
        platform_node.first_run_seconds = time.monotonic() - started
        platform_node.spied = spy.stop()
        connect_admin(hosts_file, admin, admin_key)
        yield platform_node
    finally:
        for host in (outsider, admin, node):
            harness.remove(host)
