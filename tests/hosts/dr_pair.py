"""Two k3s nodes for a disaster-recovery rehearsal: A with the whole platform, B fresh.

Both use the stand-in k3s (playing phases 4 to 6 from the charts rendered here,
tests/hosts/platform_node.py) and the stand-in PostgreSQL on the node (as the other host
tests do); B takes the WireGuard server key from SOPS, as a rebuilt node does, and an admin's
client already knows it. Both send their copies to one off-site repository on a third test
host (tests/hosts/offsite_store.py; restic's REST server, append-only), under their own host
names: B reads A's from there in an off-site rehearsal. Used by
tests/hosts/test_dr_rehearsal.py and bench/dr_rehearsal.py.
"""

from __future__ import annotations

import copy
import os
import runpy
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from socle.wireguard_keys import generate_private_key
from tests.harness.hosts import REPO_ROOT, Harness, TestHost
from tests.hosts.admin import install_client_config, new_admin_key, socle_command
from tests.hosts.k3s_node import k3s_node_data, standin_k3s_data
from tests.hosts.offsite_store import REST_PORT, new_key_pair, set_up_store
from tests.hosts.platform_node import (
    GRAFANA_KEY,
    POSTGRESQL_KEY,
    place_renderings,
    platform_secrets,
    renderings,
)
from tests.sops_files import write_sops_file


@dataclass
class Pair:
    """Hosts A and B in one hosts file, and the admin on B's VPN."""

    harness: Harness
    a: TestHost
    b: TestHost
    admin: TestHost
    store: TestHost
    hosts_file: Path
    workdir: Path

    def back_up_a(self, *, offsite: bool = False) -> None:
        """A's backup and snapshot, as its agent takes them; sent off-site too if asked."""
        jobs = ["backup postgres", "snapshot k3s"] + (["copy offsite"] if offsite else [])
        for job in jobs:
            self.a.ssh(f"sudo socle-agent {job}")

    def rehearse(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `socle dr-rehearsal` from A to B, as an operator would."""
        return socle_command(
            self.hosts_file, "dr-rehearsal", "--from", "inventories/test.py", "--from-host",
            self.a.name, "--to", "inventories/test.py", "--to-host", self.b.name,
            "--report-dir", str(self.workdir / "reports"), "--yes", *args,
        )  # fmt: skip


def agent_settings() -> dict[str, object]:
    """The test hosts' agent (the stand-in PostgreSQL) plus k3s snapshots and drills."""
    settings = copy.deepcopy(
        runpy.run_path(str(REPO_ROOT / "inventories" / "group_data" / "test.py"))["agent_settings"]
    )
    settings["schedule"].update({"k3s_snapshot": "every 6 hours",
                                 "k3s_drill": "weekly on sunday at 05:00",
                                 "offsite_copy": "every 6 hours"})  # fmt: skip
    settings["offsite"] = {"call_timeout_seconds": 60, "transfer_timeout_seconds": 300}
    return settings


@contextmanager
def rehearsal_pair(harness: Harness, workdir: Path, prefix: str = "dr") -> Iterator[Pair]:
    """Start A (the whole platform deployed), B (only the stand-in PostgreSQL), the
    off-site store and an admin; remove them afterwards. SOPS_AGE_KEY_FILE is set meanwhile."""
    a, b = harness.start(f"{prefix}-a"), harness.start(f"{prefix}-b")
    admin, store = harness.start(f"{prefix}-admin"), harness.start(f"{prefix}-store")
    password, rest_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    _, node_public_key = new_key_pair(workdir, "node")
    set_up_store(store, node_public_key, "platform", rest_password, workdir)
    sops_file, age_key = write_sops_file(workdir, {
        "postgres_password": password, "wireguard_private_key": generate_private_key(),
        GRAFANA_KEY: secrets.token_urlsafe(18), POSTGRESQL_KEY: secrets.token_urlsafe(18),
        "offsite_restic_password": secrets.token_urlsafe(24),
        "offsite_rest_password": rest_password,
    })  # fmt: skip
    admin_key, admin_public = new_admin_key(workdir)
    k3s = standin_k3s_data(workdir)
    common = {
        "k3s_airgap_dir": k3s["k3s_airgap_dir"],
        "agent_settings": agent_settings(),
        "agent_secrets": [{"path": "/etc/socle/postgres-password", "sops_file": str(sops_file),
                           "key": "postgres_password"}],
        "standin_postgres_password": password,
        "wireguard_private_key_sops": str(sops_file),
        **platform_secrets(sops_file),
        # one repository for both: B reads A's copies there (restic's --host tells them apart)
        "offsite": {"destination": "rest", "sops_file": str(sops_file),
                    "rest": {"url": f"http://{store.address}:{REST_PORT}/rest/",
                             "user": "platform", "insecure_http": True}},
    }  # fmt: skip
    versions = Path(k3s["socle_versions_file"])
    data = {host.name: k3s_node_data(admin_public, versions, **common) for host in (a, b)}
    hosts_file = harness.write_hosts_file(workdir / "hosts.json", [a, b], data=data)
    # What the stand-in k3s plays phases 4 to 6 from, on both (B's provisioning runs them).
    rendered = renderings(data[a.name])
    for host in (a, b):
        place_renderings(host, rendered)
    previous = os.environ.get("SOPS_AGE_KEY_FILE")
    os.environ["SOPS_AGE_KEY_FILE"] = str(age_key)
    try:
        for deploy in ("tests/hosts/deploys/postgres_standin.py", "deploys/all.py"):
            harness.run_pyinfra(hosts_file, deploy, "--limit", a.name)
        # B's PostgreSQL: in production the cluster's, here the stand-in, fresh and empty of
        # A's rows. B is otherwise untouched until the rehearsal.
        harness.run_pyinfra(hosts_file, "tests/hosts/deploys/postgres_standin.py",
                            "--limit", b.name)  # fmt: skip
        config = socle_command(hosts_file, "wireguard", "client-config", "--inventory",
                               "inventories/test.py", "--host", b.name, "--peer", "admin",
                               "--private-key-file", str(admin_key))  # fmt: skip
        if config.returncode != 0:
            raise AssertionError(f"client-config for B failed: {config.stderr}")
        install_client_config(admin, config.stdout)
        yield Pair(harness, a, b, admin, store, hosts_file, workdir)
    finally:
        if previous is None:
            os.environ.pop("SOPS_AGE_KEY_FILE", None)
        else:
            os.environ["SOPS_AGE_KEY_FILE"] = previous
        for host in (admin, b, a, store):
            harness.remove(host)
