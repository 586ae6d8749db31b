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
                        "-/var/lib/rancher/k3s/server/db"]


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
