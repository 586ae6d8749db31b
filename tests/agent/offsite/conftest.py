"""A node for the off-site jobs: the session's PostgreSQL, a stand-in k3s datastore, and a
real restic repository behind rclone's append-only REST server on the loopback address.

Each test gets a repository of its own (a folder of the module's server), so what one
sends is not seen by the next.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from socle_agent import catalogue
from socle_agent.config import Config, load_config

from tests.agent.conftest import AGENT, PgCluster, config_text, write_config
from tests.agent.offsite_repository import NodeFiles, RestServer
from tests.standins.commands import write_command
from tests.standins.k3s_datastore import create_datastore, install_server

OFFSITE_TOML = """
[offsite]
environment_file = "{env_file}"
check_read_data_percent = 100
call_timeout_seconds = {call_timeout}
transfer_timeout_seconds = {transfer_timeout}

[k3s]
server_dir = "{server_dir}"
config_file = "{config_file}"

[drill]
rto_seconds = {{ postgres = 600, k3s = 600 }}
rpo_seconds = {{ postgres = 93600, k3s = 25200 }}
"""


@dataclass
class OffsiteNode:
    """An agent configuration with off-site copies, and how to run the agent on it."""

    root: Path
    config_path: Path
    files: NodeFiles
    server_dir: Path
    k3s_files: dict[str, bytes]
    bin_dir: Path

    @property
    def host(self) -> str:
        return self.files.values["SOCLE_OFFSITE_HOST"]

    def config(self) -> Config:
        return load_config(self.config_path)

    def agent(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`socle-agent ARGS` with stand-in systemctl (k3s stopped) first on its PATH."""
        env = dict(os.environ, PATH=f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}")
        return subprocess.run([AGENT, "--config", str(config or self.config_path), *args],
                              capture_output=True, text=True, timeout=300, env=env)

    def backups(self, kind: str) -> list[catalogue.Backup]:
        return catalogue.list_backups(self.config().agent.backup_dir, kind)

    def snapshots(self) -> list[dict[str, object]]:
        import json

        listed = self.files.restic("snapshots", "--json", "--host", self.host).stdout
        return list(json.loads(listed))

    def rewrite(self, old: str, new: str) -> None:
        """Change the configuration file's text."""
        text = self.config_path.read_text()
        assert old in text, old
        self.config_path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    with RestServer(tmp_path_factory.mktemp("offsite-store")) as server:
        yield server


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_datastore(tmp_path_factory.mktemp("k3s-template") / "state.db", rows=300)


def make_node(tmp_path: Path, pg: PgCluster, password_file: Path, files: NodeFiles,
              template_db: Path, extra: str = "", call_timeout: float = 60,
              transfer_timeout: float = 120) -> OffsiteNode:
    """A node's configuration over `files` (the off-site repository it sends to)."""
    server_dir, config_file, k3s_files = install_server(tmp_path / "k3s", template_db)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_command(bin_dir, "systemctl", stdout="inactive\n", status=3)
    text = config_text(tmp_path, pg, password_file) + OFFSITE_TOML.format(
        env_file=files.env_file, server_dir=server_dir, config_file=config_file,
        call_timeout=call_timeout, transfer_timeout=transfer_timeout) + extra
    path = write_config(tmp_path, text)
    return OffsiteNode(tmp_path, path, files, server_dir, k3s_files, bin_dir)


@pytest.fixture()
def node(tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path,
         rest_server: RestServer, template_db: Path) -> OffsiteNode:
    """A node sending to a repository of its own on the module's server."""
    name = "node-" + secrets.token_hex(3)
    files = rest_server.node_files(tmp_path / "etc-offsite", host=name, repository=name)
    return make_node(tmp_path, pg, pg_password_file, files, template_db)
