"""The programs the k3s operations run on the node, run here against stand-in commands
(`systemctl`, `journalctl`, `socle-agent`, `k3s`) that answer as a node would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from operations.k3s import ROLLBACK_PROGRAM, UPGRADE_PROGRAM, WAIT_PROGRAM
from tests.standins.commands import write_command

SNAPSHOT = "k3s-20260101T000000Z"
SNAPSHOT_OK = f"k3s_snapshot: ok in 0.4 s: {SNAPSHOT} (81920 bytes, 12 rows up to revision 12)\n"


def run(program: str, *args: str, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-c", program, *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_wait_gives_up_naming_what_to_look_at_with_the_journal(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    write_command(bin_dir, "systemctl", stdout="activating\n", status=3)
    write_command(bin_dir, "journalctl", stdout="k3s[42]: level=fatal msg=\"no datastore\"\n")
    k3s = write_command(bin_dir, "k3s", status=1)

    done = run(WAIT_PROGRAM, str(k3s), "v1.33.2+k3s1", "1", bin_dir=bin_dir)

    assert done.returncode == 1
    assert "k3s v1.33.2+k3s1 is not Ready after 1 s (the k3s unit is activating)" in done.stderr
    assert "journalctl -u k3s -e" in done.stderr and "systemctl status k3s" in done.stderr
    assert 'msg="no datastore"' in done.stderr


def test_wait_ends_when_the_node_is_ready_with_the_version(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    write_command(bin_dir, "systemctl", stdout="active\n")
    node = {"metadata": {"name": "vps"}, "status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "nodeInfo": {"kubeletVersion": "v1.33.2+k3s1"}}}
    k3s = write_command(bin_dir, "k3s", stdout=json.dumps({"items": [node]}))

    done = run(WAIT_PROGRAM, str(k3s), "v1.33.2+k3s1", "30", bin_dir=bin_dir)

    assert done.returncode == 0, done.stderr
    assert "node vps is Ready with k3s v1.33.2+k3s1" in done.stdout


def upgrade_layout(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("installed", "staged", "previous", "images",
                                                "record")}
    paths["installed"].write_bytes(b"old k3s")
    paths["staged"].write_bytes(b"new k3s")
    paths["images"].mkdir()
    (paths["images"] / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"old images")
    return paths


def upgrade(paths: dict[str, Path], agent: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    return run(UPGRADE_PROGRAM, str(agent), str(paths["installed"]), str(paths["staged"]),
               str(paths["previous"]), str(paths["images"]), str(paths["record"]),
               "v1.33.2+k3s1", "1" * 64, "v1.34.1+k3s1", bin_dir=bin_dir)


def test_upgrade_keeps_the_binary_and_images_and_records_the_checked_snapshot(
    tmp_path: Path,
) -> None:
    paths = upgrade_layout(tmp_path)
    agent = write_command(tmp_path / "bin", "socle-agent", stdout=SNAPSHOT_OK)

    done = upgrade(paths, agent, tmp_path / "bin")

    assert done.returncode == 0, done.stderr
    record = json.loads(paths["record"].read_text())
    assert record["snapshot"] == SNAPSHOT and record["previous_version"] == "v1.33.2+k3s1"
    assert paths["previous"].read_bytes() == b"old k3s"
    assert (tmp_path / "previous-images" / "k3s-airgap-images-amd64.tar.zst").exists()
    assert oct(paths["record"].stat().st_mode & 0o777) == "0o600"


def test_a_failed_snapshot_stops_the_upgrade_and_removes_the_staged_binary(
    tmp_path: Path,
) -> None:
    paths = upgrade_layout(tmp_path)
    agent = write_command(tmp_path / "bin", "socle-agent",
                          stderr="k3s_snapshot: failed: not enough space\n", status=1)

    done = upgrade(paths, agent, tmp_path / "bin")

    assert done.returncode == 1
    assert "the datastore snapshot (socle-agent snapshot k3s) failed" in done.stderr
    assert "not enough space" in done.stderr
    assert "The installed k3s v1.33.2+k3s1 was not replaced." in done.stderr
    assert not paths["staged"].exists() and not paths["record"].exists()
    assert not paths["previous"].exists()


def test_rollback_stops_before_any_change_when_the_snapshot_fails_its_check(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    log = tmp_path / "systemctl.log"
    (bin_dir).mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\necho inactive\n")
    systemctl.chmod(0o755)
    agent = write_command(bin_dir, "socle-agent", stderr="no k3s backup with id X\n", status=1)
    record = tmp_path / "rollback.json"
    record.write_text(json.dumps({"previous_version": "v1.33.2+k3s1", "upgraded_to":
                                  "v1.34.1+k3s1", "snapshot": SNAPSHOT}))
    installed = tmp_path / "k3s"
    installed.write_bytes(b"new k3s")

    done = run(ROLLBACK_PROGRAM, str(agent), str(installed), str(tmp_path / "k3s.previous"),
               str(tmp_path / "images"), str(record), bin_dir=bin_dir)

    assert done.returncode == 1
    assert f"the snapshot {SNAPSHOT} taken before the upgrade fails its check" in done.stderr
    assert "Nothing was changed." in done.stderr
    assert not log.exists() and installed.read_bytes() == b"new k3s" and record.exists()
