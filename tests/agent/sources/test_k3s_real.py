"""The snapshot against a real k3s server, where a k3s binary is available.

k3s cannot be downloaded on the machines that run this suite, so the test is opt-in:
set SOCLE_K3S_BINARY to a k3s binary (or put `k3s` on PATH) on a machine where it runs,
as root. Elsewhere it is reported as skipped, and the stand-in datastore of
tests/standins/ proves the same behaviour.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from socle_agent.sources.k3s import SnapshotOptions, k3s_version, take_snapshot, verify_snapshot

pytestmark = pytest.mark.internet

K3S = os.environ.get("SOCLE_K3S_BINARY") or shutil.which("k3s")


@pytest.fixture
def running_k3s(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if not K3S:
        pytest.skip("no k3s binary here: set SOCLE_K3S_BINARY where k3s can run")
    if os.geteuid() != 0:
        pytest.skip("a k3s server needs root")
    data_dir = tmp_path / "k3s"
    config_file = tmp_path / "config.yaml"
    config_file.write_text("write-kubeconfig-mode: '0600'\n")
    server = subprocess.Popen(
        [K3S, "server", "--config", str(config_file), "--data-dir", str(data_dir),
         "--disable-agent", "--disable", "traefik,servicelb,metrics-server"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    state_db = data_dir / "server" / "db" / "state.db"
    try:
        deadline = time.monotonic() + 180
        while not (state_db.exists() and (data_dir / "server" / "token").exists()):
            assert server.poll() is None, "k3s server exited"
            assert time.monotonic() < deadline, "k3s made no datastore in 180 s"
            time.sleep(1)
        time.sleep(10)  # let k3s write its bootstrap data and leases
        yield data_dir / "server", config_file
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_snapshot_of_a_running_k3s_passes_its_drill(
    running_k3s: tuple[Path, Path], tmp_path: Path
) -> None:
    server_dir, config_file = running_k3s
    assert K3S is not None

    backup = take_snapshot(
        server_dir, config_file, tmp_path / "backups",
        SnapshotOptions(k3s_version=k3s_version(K3S)),
    )  # fmt: skip
    result = verify_snapshot(backup.path)

    assert result.passed, result.reason
