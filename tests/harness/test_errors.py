"""Bad input to the harness ends with one clear message and no container left behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import engine, images
from tests.harness.engine import connect_engine
from tests.harness.errors import EngineUnavailable, HarnessError, HostBootFailed, ImageBuildFailed
from tests.harness.hosts import REPO_ROOT, Harness, leaked_containers, remove_orphans

pytestmark = pytest.mark.host


@pytest.fixture
def own_harness() -> Iterator[Harness]:
    """A harness of its own, so a test may break its image without touching others'."""
    test_harness = Harness()
    try:
        yield test_harness
    finally:
        test_harness.close()
        assert leaked_containers(test_harness.client, test_harness.run_id) == []


def test_no_engine_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(engine, "candidate_sockets", lambda: [tmp_path / "absent.sock"])

    with pytest.raises(EngineUnavailable, match="no Docker or Podman API socket found.*setup"):
        connect_engine()


def test_docker_host_that_does_not_answer_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))  # bound but never listening: connections are refused
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dead}")

    with pytest.raises(EngineUnavailable, match=f"DOCKER_HOST=unix://{dead} does not answer"):
        connect_engine()
    listener.close()


def test_socket_without_permission_is_reported() -> None:
    # pytest's tmp_path is private to root; the unprivileged child must see the socket.
    folder = Path(tempfile.mkdtemp(prefix="socle-perm-"))
    os.chmod(folder, 0o755)
    sock_path = folder / "engine.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    os.chmod(sock_path, 0o600)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops to an unprivileged user, as a person without the group
        os.close(read_end)
        reply = b""
        try:
            os.environ.pop("DOCKER_HOST", None)
            engine.candidate_sockets = lambda: [sock_path]  # type: ignore[assignment]
            os.setgid(65534)
            os.setuid(65534)
            connect_engine()
        except Exception as exc:  # any failure is reported to the parent, who asserts
            reply = str(exc).encode()
        finally:
            os.write(write_end, reply)
            os._exit(0)
    os.close(write_end)
    message = os.read(read_end, 4096).decode()
    os.waitpid(pid, 0)
    listener.close()
    shutil.rmtree(folder)

    assert f"{sock_path}: no permission" in message


def test_base_image_that_cannot_be_pulled_is_named(
    monkeypatch: pytest.MonkeyPatch, own_harness: Harness
) -> None:
    monkeypatch.setenv("SOCLE_TEST_BASE", "localhost/socle-no-such-base:1")

    with pytest.raises(ImageBuildFailed, match="SOCLE_TEST_BASE=localhost/socle-no-such-base:1"):
        own_harness.start("nobase")


def test_debootstrap_failure_is_reported_with_its_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, own_harness: Harness
) -> None:
    # A mirror on a closed loopback port: debootstrap fails at once.
    monkeypatch.setattr(images, "apt_mirror", lambda: ("http://127.0.0.1:9/debian", "bookworm"))
    monkeypatch.setattr(images, "BASE_PACKAGES", ("systemd", "socle-test-no-cache"))

    with pytest.raises(ImageBuildFailed, match="debootstrap of bookworm from http://127.0.0.1:9"):
        images.build_local_base(own_harness.client, tmp_path)


def test_container_that_cannot_start_leaves_nothing(own_harness: Harness) -> None:
    base = images.ensure_base_image(own_harness.client, own_harness.cache_dir)
    own_harness._image = base  # a bare root filesystem: no command to run

    with pytest.raises(HarnessError, match="cannot start test host broken"):
        own_harness.start("broken")
    assert leaked_containers(own_harness.client, own_harness.run_id) == []


def test_host_whose_sshd_never_answers_fails_and_is_removed(own_harness: Harness) -> None:
    image = own_harness.image
    node = own_harness.start("mute")
    node.exec("systemctl mask --now ssh.service ssh.socket")
    node.container.commit(repository="localhost/socle-test-mute", tag=own_harness.run_id)
    own_harness.remove(node)
    own_harness._image = f"localhost/socle-test-mute:{own_harness.run_id}"
    try:
        with pytest.raises(HostBootFailed, match="test host mute2 .* never became ready"):
            own_harness.start("mute2", boot_timeout=8)
        assert leaked_containers(own_harness.client, own_harness.run_id) == []
    finally:
        own_harness._image = image
        own_harness.client.images.remove(f"localhost/socle-test-mute:{own_harness.run_id}")


def test_hosts_of_a_run_killed_with_sigkill_are_removed_by_the_next(harness: Harness) -> None:
    started = subprocess.Popen(
        [sys.executable, "-c",
         "from tests.harness.hosts import Harness\n"
         "h = Harness()\n"
         "h.start('victim')\n"
         "print(h.run_id, flush=True)\n"
         "import time; time.sleep(600)\n"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert started.stdout is not None
    run_id = started.stdout.readline().strip()
    assert leaked_containers(harness.client, run_id)
    started.kill()
    started.wait()

    remove_orphans(harness.client)

    assert leaked_containers(harness.client, run_id) == []
