"""The agent's systemd unit: notify type, watchdog, sandboxing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "agent" / "systemd" / "socle-agent.service"


def unit_values() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(f"{section}.{key}", []).append(value)
    return values


def test_unit_is_notify_with_watchdog_and_config_check() -> None:
    values = unit_values()
    assert values["Service.Type"] == ["notify"]
    assert int(values["Service.WatchdogSec"][0]) > 0
    assert values["Service.ExecStartPre"][0].endswith("check-config")
    assert values["Service.ExecStart"][0].endswith(" run")


def test_unit_is_sandboxed_and_may_write_only_its_directories() -> None:
    values = unit_values()
    for key in ("ProtectSystem", "PrivateTmp", "NoNewPrivileges", "ProtectHome"):
        assert values[f"Service.{key}"][0] in ("strict", "true"), key
    writable = " ".join(values["Service.ReadWritePaths"]).split()
    assert writable == ["/var/lib/socle-agent", "/var/backups/socle",
                        "-/var/lib/rancher/k3s/server/db", "-/var/cache/socle-offsite"]


def test_unit_paths_match_the_sample_configuration() -> None:
    example = (UNIT.parents[1] / "agent.example.toml").read_text()
    assert 'state_file = "/var/lib/socle-agent/state.json"' in example
    assert 'backup_dir = "/var/backups/socle"' in example


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is needed (Debian package systemd)")
    # verify wants the ExecStart program to exist; point it at a stand-in path.
    unit = tmp_path / "socle-agent.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/socle-agent", "/bin/true"))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True)
    problems = [line for line in done.stderr.splitlines() if "socle-agent.service" in line]
    assert problems == []


# What `systemd-analyze security` may still flag, each for a reason the unit states.
KEPT_EXPOSURES = {
    "User=/DynamicUser=",  # k3s's files are root's
    "PrivateNetwork=",  # PostgreSQL, the Kubernetes API, SMTP and metrics are on the network
    "IPAddressDeny=",  # the SMTP relay's address is not known to the unit
    "RestrictAddressFamilies=~AF_UNIX",  # sd_notify, systemctl
    "RestrictAddressFamilies=~AF_(INET|INET6)",  # the same network
    "PrivateUsers=",  # a user namespace would hide root's own files
    "RootDirectory=/RootImage=",  # pg_dump and k3s's files live in the host's tree
    "DeviceAllow=",  # PrivateDevices' own minimal set
    "SystemCallFilter=~@privileged",  # only @chown, for restic's restores; no capability
}


def test_unit_leaves_only_the_exposures_it_explains(tmp_path: Path) -> None:
    unit = tmp_path / "socle-agent.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/socle-agent", "/bin/true"))
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True)
    flagged = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("✗")}
    assert flagged <= KEPT_EXPOSURES, flagged - KEPT_EXPOSURES
    overall = float(done.stdout.split("Overall exposure level for socle-agent.service:")[1]
                    .split()[0])
    assert overall <= 2.0
    values = unit_values()
    assert values["Service.CapabilityBoundingSet"] == [""]
    assert values["Service.SystemCallFilter"] == ["@system-service", "~@privileged @resources",
                                                  "@chown"]
    assert values["Service.ProtectProc"] == ["invisible"]
    assert values["Service.SocketBindDeny"] == ["any"]
