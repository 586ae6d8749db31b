"""Secrets reach the node without ever being readable by another local user.

An unprivileged user on the node (``spy``, tests/hosts/probes.py) reads every file it can
under the places an upload could pass through, and every command line, as fast as it can,
while a large secret is uploaded. pyinfra's
own ``files.put`` with sudo is the control: the spy reads it in ``/tmp``, which shows the
spy works. socle's ``secret_file`` leaves the spy nothing, and nothing behind, also when
the last copy fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.hosts import Harness, TestHost
from tests.hosts.probes import SecretSpy

pytestmark = pytest.mark.host

DEPLOY = "tests/hosts/deploys/secret_upload.py"
WATCHED = ("/tmp", "/var/tmp", "/dev/shm", "/home", "/run", "/etc/socle-test", "/etc/socle-small")


@dataclass
class UploadNode:
    node: TestHost
    workdir: Path
    harness: Harness


@pytest.fixture(scope="module")
def upload_node(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UploadNode]:
    node = harness.start("upload-node", networks=("public",))
    node.exec("install -d -m 0755 /etc/socle-test")
    yield UploadNode(node, tmp_path_factory.mktemp("uploads"), harness)
    harness.remove(node)


def upload_while_spied(
    env: UploadNode, dest: str, upload_with: str, *, check: bool = True
) -> tuple[dict[str, Any], str, int]:
    """Upload a 16 MB secret while the spy reads; return its report, the marker, the exit code."""
    marker = "SECRET-" + secrets.token_hex(16)
    source = env.workdir / f"{upload_with}.secret"
    source.write_text(marker + "\n" + secrets.token_hex(8 * 1024 * 1024) + "\n")
    spy = SecretSpy(env.node, [marker], WATCHED).start()
    hosts_file = env.harness.write_hosts_file(
        env.workdir / "hosts.json", [env.node],
        data={env.node.name: {"upload_source": str(source), "upload_dest": dest,
                              "upload_with": upload_with}},
    )  # fmt: skip
    proc = env.harness.run_pyinfra(hosts_file, DEPLOY, check=check)
    return spy.stop(), marker, proc.returncode


def copies_of(node: TestHost, marker: str) -> list[str]:
    """Every file under the watched places that holds ``marker`` (searched as root)."""
    found = node.exec(f"grep -rls {marker} {' '.join(WATCHED)} 2>/dev/null", check=False)
    return sorted(found.stdout.split())


def test_the_spy_reads_pyinfras_own_sudo_upload_in_tmp(upload_node: UploadNode) -> None:
    report, _, _ = upload_while_spied(upload_node, "/etc/socle-test/control", "files.put")

    assert report["looks"] > 10
    assert any(str(hit).startswith("/tmp/") for hit in report["hits"]), report


def test_a_secret_is_never_readable_by_another_user_and_no_copy_remains(
    upload_node: UploadNode,
) -> None:
    dest = "/etc/socle-test/token"
    report, marker, _ = upload_while_spied(upload_node, dest, "secret_file")

    assert report["looks"] > 10
    assert report["hits"] == [], report
    assert copies_of(upload_node.node, marker) == [dest]
    mode = upload_node.node.exec(f"stat -c '%a %U:%G' {dest}").stdout.split()
    assert mode == ["600", "root:root"]
    assert upload_node.node.exec("ls -d /tmp/socle-upload.* 2>/dev/null", check=False).stdout == ""


def test_a_failed_copy_leaves_nothing_behind_and_the_old_secret_in_place(
    upload_node: UploadNode,
) -> None:
    node = upload_node.node
    # A 1 MB filesystem cannot hold the 16 MB secret: the copy as root fails half-way.
    node.exec("install -d -m 0755 /etc/socle-small && mount -t tmpfs -o size=1m tmpfs "
              "/etc/socle-small && echo old > /etc/socle-small/token "
              "&& chmod 600 /etc/socle-small/token")  # fmt: skip

    report, marker, code = upload_while_spied(
        upload_node, "/etc/socle-small/token", "secret_file", check=False
    )

    assert code != 0
    assert report["hits"] == [], report
    assert copies_of(node, marker) == []
    assert node.exec("ls -A /etc/socle-small").stdout.split() == ["token"]
    assert node.exec("cat /etc/socle-small/token").stdout == "old\n"
    assert node.exec("ls -d /tmp/socle-upload.* 2>/dev/null", check=False).stdout == ""
