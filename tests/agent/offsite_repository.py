"""An off-site repository on this machine for the agent's tests and the benchmark.

The real thing, on the loopback address: `rclone serve restic --append-only` (the server
the off-site host runs, docs/offsite.md) with a login, a restic repository initialised in
it, and the node's files as deploys/offsite.py writes them (`env`, `password`, both
0600) in a folder of the test's. The server can be stopped and started again on the same
port, as an off-site host that goes away and comes back.

Example:

    with RestServer(tmp_path / "store") as server:
        files = server.node_files(tmp_path / "etc", host="vps1")
        files.env_file   # what `[offsite] environment_file` names
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

# Characters a URL's login must encode, as the REST password of a real node may hold.
REST_PASSWORD_BASE = "p@ss:w/rd%+"


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def program(name: str) -> str:
    """The path of `name`; its absence fails loudly (scripts/setup-machine.sh installs it)."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is missing: run scripts/setup-machine.sh")
    return path


@dataclass
class NodeFiles:
    """The node's off-site files: the environment file, the password file, their folder."""

    folder: Path
    env_file: Path
    password: str
    values: dict[str, str]

    def environment(self) -> dict[str, str]:
        """restic's environment as the node gives it (for checks done by the test)."""
        return {"PATH": os.environ["PATH"], "HOME": str(self.folder),
                **{k: v for k, v in self.values.items() if k.startswith(("RESTIC_", "AWS_"))}}

    def restic(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run restic as the node would (the test's own look at the repository)."""
        return subprocess.run([program("restic"), *args], env=self.environment(),
                              capture_output=True, text=True, timeout=300, check=check)


def write_node_files(folder: Path, values: dict[str, str], password: str) -> NodeFiles:
    """Write `env` (the variables) and `password` into `folder`, root-only as on a node."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    password_file = folder / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    values = {**values, "RESTIC_PASSWORD_FILE": str(password_file),
              "RESTIC_CACHE_DIR": str(folder / "cache")}
    env_file = folder / "env"
    env_file.write_text("# written by the test, as deploys/offsite.py does\n"
                        + "".join(f"{k}={v}\n" for k, v in values.items()))
    env_file.chmod(0o600)
    return NodeFiles(folder, env_file, password, values)


class RestServer:
    """`rclone serve restic --append-only` on 127.0.0.1, with one login."""

    def __init__(self, root: Path, user: str = "node") -> None:
        self.root = root
        self.user = user
        self.password = REST_PASSWORD_BASE + secrets.token_hex(6)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    def repository(self, folder: str = "node") -> str:
        """The node's RESTIC_REPOSITORY for a folder of this server (login encoded)."""
        login = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"rest:http://{login}@127.0.0.1:{self.port}/{folder}/"

    def start(self) -> None:
        """Serve (again, on the same port) and wait until it answers."""
        self.process = subprocess.Popen(
            [program("rclone"), "serve", "restic", "--append-only", "--addr",
             f"127.0.0.1:{self.port}", "--user", self.user, "--pass", self.password,
             str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rclone serve restic did not start")

    def stop(self) -> None:
        """Stop serving: the off-site host is gone."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def node_files(self, folder: Path, host: str, limit_upload_kib: int = 0,
                   repository: str = "node") -> NodeFiles:
        """The node's files for this server, and its repository initialised."""
        values = {"SOCLE_OFFSITE_DESTINATION": "rest", "SOCLE_OFFSITE_HOST": host,
                  "SOCLE_OFFSITE_LIMIT_UPLOAD_KIB": str(limit_upload_kib),
                  "RESTIC_REPOSITORY": self.repository(repository)}
        files = write_node_files(folder, values, "repo-" + secrets.token_urlsafe(18))
        files.restic("init")
        return files

    def __enter__(self) -> RestServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
