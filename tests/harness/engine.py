"""Find the container engine that runs test hosts: Docker, else Podman's Docker API.

Example::

    client = connect_engine()
    print(engine_name(client))  # "docker" or "podman"
"""

from __future__ import annotations

import os
from pathlib import Path

import docker
from docker.errors import DockerException

from tests.harness.errors import EngineUnavailable

SETUP_HINT = "run `sudo scripts/setup-machine.sh` (installs Podman and starts its API socket)"


def candidate_sockets() -> list[Path]:
    """Return the engine sockets to try, in order: Docker first, then Podman (root, user)."""
    sockets = [Path("/var/run/docker.sock"), Path("/run/podman/podman.sock")]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        sockets.append(Path(runtime_dir) / "podman" / "podman.sock")
    return sockets


def _ping(base_url: str) -> docker.DockerClient:
    client = docker.DockerClient(base_url=base_url, timeout=600)
    client.ping()
    return client


def connect_engine() -> docker.DockerClient:
    """Return a client for the first engine that answers, or raise EngineUnavailable.

    `DOCKER_HOST`, when set, is the only engine tried: the user chose it.
    """
    if os.environ.get("DOCKER_HOST"):
        url = os.environ["DOCKER_HOST"]
        try:
            return _ping(url)
        except (DockerException, OSError) as exc:
            raise EngineUnavailable(
                f"DOCKER_HOST={url} does not answer ({exc}); unset it or start that engine"
            ) from exc
    problems = []
    for sock in candidate_sockets():
        if not sock.exists():
            continue
        if not os.access(sock, os.R_OK | os.W_OK):
            problems.append(
                f"{sock}: no permission (run as root, or add your user to the engine's group)"
            )
            continue
        try:
            return _ping(f"unix://{sock}")
        except (DockerException, OSError) as exc:
            problems.append(f"{sock}: does not answer ({exc})")
    detail = "; ".join(problems) if problems else "no Docker or Podman API socket found"
    raise EngineUnavailable(f"No usable container engine for test hosts: {detail}. {SETUP_HINT}")


def engine_name(client: docker.DockerClient) -> str:
    """Return "podman" when the engine is Podman's compatible API, else "docker"."""
    components = client.version().get("Components") or []
    names = " ".join(str(c.get("Name", "")) for c in components)
    return "podman" if "podman" in names.lower() else "docker"
