"""The harness gives a real host: a deploy runs over SSH with sudo, state is read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.hosts import Harness, TestHost, changed_operations

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def smoke_host(harness: Harness) -> Iterator[TestHost]:
    host = harness.start("smoke", networks=("public",))
    yield host
    harness.remove(host)


def test_smoke_deploy_first_run_reports_its_changes(
    harness: Harness, smoke_host: TestHost, tmp_path: Path
) -> None:
    hosts_file = harness.write_hosts_file(tmp_path / "hosts.json", [smoke_host])

    first = harness.run_pyinfra(hosts_file, "tests/hosts/deploys/smoke.py", "--json")

    assert "The smoke service's unit" in changed_operations(first.stdout)


def test_smoke_deploy_changes_the_host_as_described(
    harness: Harness, smoke_host: TestHost, tmp_path: Path
) -> None:
    hosts_file = harness.write_hosts_file(tmp_path / "hosts.json", [smoke_host])

    harness.run_pyinfra(hosts_file, "tests/hosts/deploys/smoke.py")

    # Read back over SSH, not from pyinfra's output.
    stat = smoke_host.ssh("sudo stat -c '%U %G %a' /etc/socle-smoke /etc/socle-smoke/host").stdout
    assert stat.split("\n")[:2] == ["root socle-smoke 750", "root socle-smoke 640"]
    assert smoke_host.ssh("sudo cat /etc/socle-smoke/host").stdout == "host=smoke\n"
    assert smoke_host.ssh("getent passwd socle-smoke").stdout.split(":")[6].strip() == (
        "/usr/sbin/nologin"
    )
    assert smoke_host.ssh("systemctl is-active socle-smoke").stdout.strip() == "active"
    assert smoke_host.ssh("systemctl is-enabled socle-smoke").stdout.strip() == "enabled"


def test_smoke_deploy_second_run_changes_nothing(
    harness: Harness, smoke_host: TestHost, tmp_path: Path
) -> None:
    hosts_file = harness.write_hosts_file(tmp_path / "hosts.json", [smoke_host])
    harness.run_pyinfra(hosts_file, "tests/hosts/deploys/smoke.py")

    second = harness.run_pyinfra(hosts_file, "tests/hosts/deploys/smoke.py", "--json")

    assert changed_operations(second.stdout) == []


def test_service_and_files_survive_a_reboot(smoke_host: TestHost) -> None:
    address = smoke_host.address
    smoke_host.ssh("sudo touch /var/lib/socle-smoke-marker")

    smoke_host.restart()

    assert smoke_host.address == address
    assert smoke_host.ssh("test -e /var/lib/socle-smoke-marker && echo kept").stdout == "kept\n"
    assert smoke_host.ssh("systemctl is-active socle-smoke").stdout.strip() == "active"


def test_pyinfra_unreachable_host_fails_clearly(harness: Harness, tmp_path: Path) -> None:
    hosts_file = tmp_path / "hosts.json"
    hosts_file.write_text(json.dumps({"hosts": []}))
    missing = tmp_path / "absent.json"

    proc = harness.run_pyinfra(missing, "tests/hosts/deploys/smoke.py", check=False)

    assert proc.returncode != 0
    assert "no test hosts" in proc.stdout + proc.stderr
