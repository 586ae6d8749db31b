"""The off-site repository proven on test hosts: a node sends encrypted copies to a store
it can add to but not delete from, and the operator prunes with full rights.

Two hosts: ``offsite-node`` (deploys/offsite.py) and ``offsite-store``, the second machine
(tests/hosts/offsite_store.py: rclone's append-only REST server, and SSH forcing the
node's key to rclone's append-only server on stdio). Real restic on both sides. The
backups sent here are folders made by the test, shaped like the agent's; the agent's own
off-site job builds on the same files (docs/offsite.md).
"""

from __future__ import annotations

import json
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from socle_agent.offsite.environment import parse_environment

from tests.harness.hosts import Harness, TestHost, changed_operations
from tests.hosts.admin import socle_command
from tests.hosts.offsite_store import OffsiteStore, new_key_pair, set_up_store
from tests.sops_files import write_sops_file

pytestmark = pytest.mark.host

DEPLOY = "deploys/offsite.py"
NODE = "offsite-node"
# The REST login crosses a URL: every character that needs encoding in one.
REST_PASSWORD = "p@ss:w/rd%$'\"&; x#?" + secrets.token_hex(4)
REPOSITORY_PASSWORD = secrets.token_urlsafe(24)
# A backup folder shaped like the agent's: rows in clear, and a manifest.
WRITE_BACKUP = r"""
import json, os, sys
folder, database, marker = sys.argv[1:]
os.umask(0o077)
os.makedirs(folder)
with open(os.path.join(folder, "dump.tsv"), "w") as dump:
    for index in range(20000):
        dump.write(f"{index}\t{marker}\tsome text of row {index}\n")
with open(os.path.join(folder, "manifest.json"), "w") as manifest:
    json.dump({"database": database, "rows": 20000}, manifest)
"""


@dataclass
class OffsiteHosts:
    node: TestHost
    store: OffsiteStore
    harness: Harness
    workdir: Path
    data: dict[str, Any]
    first_run: str

    def deploy(self, destination: str, *args: str, check: bool = True, **changes: Any) -> Any:
        """Run the off-site deploy with ``destination`` (and changes to the table)."""
        data = json.loads(json.dumps(self.data))
        data["offsite"].update(destination=destination, **changes)
        hosts_file = self.harness.write_hosts_file(
            self.workdir / "hosts.json", [self.node], data={NODE: data}
        )
        return self.harness.run_pyinfra(hosts_file, DEPLOY, *args, check=check)

    def restic(self, command: str, *, check: bool = True) -> Any:
        """Run restic on the node with its off-site settings, as root (the agent's way)."""
        return self.node.exec(f"socle-offsite-restic {command}", check=check)

    def backup(self, database: str) -> tuple[str, str]:
        """Write a backup folder shaped like the agent's and send it; return its id and the
        marker written in it."""
        backup_id = "20250131T020000Z-" + secrets.token_hex(3)
        marker = "ROW-" + secrets.token_hex(8)
        folder = f"/var/backups/socle/postgres/{database}/{backup_id}"
        self.node.exec(["python3", "-c", WRITE_BACKUP, folder, database, marker])
        self.restic(
            f"backup --host {NODE} --tag kind=postgres --tag database={database} "
            f"--tag backup={backup_id} {folder}"
        )
        return backup_id, marker

    def snapshot_ids(self, database: str) -> list[str]:
        listed = self.restic(f"snapshots --json --host {NODE} --tag kind=postgres,"
                             f"database={database}").stdout  # fmt: skip
        return [snapshot["id"] for snapshot in json.loads(listed)]


@pytest.fixture(scope="module")
def offsite(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OffsiteHosts]:
    workdir = tmp_path_factory.mktemp("offsite")
    node = harness.start(NODE, networks=("public",))
    store_host = harness.start("offsite-store", networks=("public",))
    node_key, node_public_key = new_key_pair(workdir, "node")
    store = set_up_store(store_host, node_public_key, NODE, REST_PASSWORD, workdir)
    sops_file, key_file = write_sops_file(workdir, {
        "offsite_restic_password": REPOSITORY_PASSWORD,
        "offsite_rest_password": REST_PASSWORD,
        "offsite_ssh_private_key": node_key.read_text(),
    })  # fmt: skip
    address = store_host.address
    data: dict[str, Any] = {"offsite": {
        "destination": "rest",
        "rest": {"url": f"http://{address}:8000/rest/", "user": NODE, "insecure_http": True},
        "sftp": {"host": address, "user": "socle-offsite", "host_key": store.host_key},
        "sops_file": str(sops_file),
        "operator": {"repository": f"sftp:socle-offsite@{address}:/srv/socle-restic/rest",
                     "sftp_command": store.operator_sftp_command()},
        # The local policy's counts (the agent's defaults): one removal per 4 snapshots.
        "retention": {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6},
    }}  # fmt: skip
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("SOPS_AGE_KEY_FILE", str(key_file))
        hosts = OffsiteHosts(node, store, harness, workdir, data, "")
        hosts.first_run = hosts.deploy("rest", "--json").stdout
        yield hosts
    harness.remove(store_host)
    harness.remove(node)


def test_secrets_are_root_only_and_never_shown(offsite: OffsiteHosts) -> None:
    node = offsite.node
    shown = offsite.deploy("rest", "--dry", "--diff", "-vv")

    modes = node.exec("stat -c '%a %U' /etc/socle/offsite /etc/socle/offsite/password "
                      "/etc/socle/offsite/env /var/cache/socle-offsite").stdout  # fmt: skip
    assert modes.split("\n")[:4] == ["700 root", "600 root", "600 root", "700 root"]
    assert node.exec("cat /etc/socle/offsite/password").stdout.strip() == REPOSITORY_PASSWORD
    for secret in (REPOSITORY_PASSWORD, REST_PASSWORD, "%40ss%3Aw%2Frd"):
        assert secret not in shown.stdout + shown.stderr + offsite.first_run


def test_the_environment_file_reads_the_same_for_systemd_and_the_parser(
    offsite: OffsiteHosts,
) -> None:
    text = offsite.node.exec("cat /etc/socle/offsite/env").stdout
    seen = offsite.node.exec(
        "systemd-run --quiet --wait --pipe -p EnvironmentFile=/etc/socle/offsite/env env"
    ).stdout
    from_systemd = dict(line.split("=", 1) for line in seen.splitlines() if "=" in line)

    parsed = parse_environment(text)
    assert {name: from_systemd.get(name) for name in parsed} == parsed
    assert parsed["RESTIC_REPOSITORY"].startswith(f"rest:http://{NODE}:p%40ss%3Aw%2Frd%25")


def test_a_backup_goes_off_site_encrypted_and_comes_back_whole(offsite: OffsiteHosts) -> None:
    backup_id, marker = offsite.backup("app")

    offsite.restic(f"restore latest --host {NODE} --tag backup={backup_id} --target /tmp/back")

    folder = f"/var/backups/socle/postgres/app/{backup_id}"
    compared = offsite.node.exec(f"diff -r {folder} /tmp/back{folder}", check=False)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert marker in offsite.node.exec(f"cat /tmp/back{folder}/dump.tsv").stdout
    assert offsite.store.files_holding(marker) == []
    assert offsite.store.files_holding("some text of row") == []


def test_the_nodes_credentials_cannot_delete_or_rewrite_the_history(
    offsite: OffsiteHosts,
) -> None:
    offsite.backup("history")
    offsite.backup("history")
    before = offsite.store.file_digests("rest")
    ids = offsite.snapshot_ids("history")

    # restic retries a refused removal for a while before it gives up: one try is enough.
    forget = offsite.restic(f"forget {ids[0]}", check=False)
    url = parse_environment(offsite.node.exec("cat /etc/socle/offsite/env").stdout)[
        "RESTIC_REPOSITORY"
    ].removeprefix("rest:")
    attempts = {
        how: offsite.node.exec(
            f"curl -s -o /dev/null -w '%{{http_code}}' -X {how.split()[0]} "
            f"--data-binary junk {shlex.quote(url + how.split()[1])}"
        ).stdout
        for how in (f"DELETE snapshots/{ids[0]}", f"POST snapshots/{ids[0]}", "POST config",
                    "DELETE config")
    }  # fmt: skip

    assert forget.returncode != 0 and "403" in forget.stderr, forget.stderr[-2000:]
    assert set(attempts.values()) == {"403"}, attempts
    assert offsite.snapshot_ids("history") == ids
    after = offsite.store.file_digests("rest")
    assert set(before.splitlines()) <= set(after.splitlines())  # nothing changed or removed


def test_the_operator_prunes_with_full_rights(offsite: OffsiteHosts) -> None:
    for _ in range(4):
        offsite.backup("pruned")
    ids = offsite.snapshot_ids("pruned")
    hosts_file = offsite.harness.write_hosts_file(
        offsite.workdir / "operator.json", [offsite.node],
        data={NODE: {**offsite.data, "offsite": {**offsite.data["offsite"]}}},
    )  # fmt: skip
    command = ("offsite", "prune", "--inventory", "inventories/test.py", "--host", NODE)

    planned = socle_command(hosts_file, *command, "--dry")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "kind=postgres,database=pruned: keep 3, remove 1" in planned.stdout
    assert offsite.snapshot_ids("pruned") == ids

    pruned = socle_command(hosts_file, *command, "--yes")

    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert offsite.snapshot_ids("pruned") == ids[1:]
    assert "removed 1 snapshot(s) and their unused data" in pruned.stderr
    assert offsite.restic("check").returncode == 0


def test_bad_destination_data_stops_before_the_node_changes(offsite: OffsiteHosts) -> None:
    before = offsite.node.exec("sha256sum /etc/socle/offsite/env").stdout

    proc = offsite.deploy(
        "rest", check=False, rest={"url": "https://backup.example.net/a?b", "user": NODE}
    )

    assert proc.returncode != 0
    assert "offsite.rest.url" in proc.stdout + proc.stderr
    assert offsite.node.exec("sha256sum /etc/socle/offsite/env").stdout == before


def test_over_ssh_the_node_reaches_only_an_append_only_server(offsite: OffsiteHosts) -> None:
    offsite.deploy("sftp")
    backup_id, marker = offsite.backup("app")
    before = offsite.store.file_digests("sftp")
    ids = offsite.snapshot_ids("app")

    forget = offsite.restic(f"forget {ids[0]}", check=False)
    ssh = "ssh -F /etc/socle/offsite/ssh_config socle-offsite"
    offsite.node.exec(f"{ssh} rm -rf /srv/socle-restic </dev/null", check=False)
    sftp = offsite.node.exec(
        "echo 'rm /srv/socle-restic/sftp/config' | sftp -F /etc/socle/offsite/ssh_config "
        "-b - socle-offsite", check=False,
    )  # fmt: skip
    offsite.restic(f"restore latest --host {NODE} --tag backup={backup_id} --target /tmp/sftp")

    assert forget.returncode != 0 and "403" in forget.stderr, forget.stderr[-2000:]
    assert sftp.returncode != 0
    assert offsite.snapshot_ids("app") == ids
    assert set(before.splitlines()) <= set(offsite.store.file_digests("sftp").splitlines())
    assert offsite.store.host.exec("ls /srv/socle-restic").stdout.split() == ["rest", "sftp"]
    assert (
        marker
        in offsite.node.exec(
            f"cat /tmp/sftp/var/backups/socle/postgres/app/{backup_id}/dump.tsv"
        ).stdout
    )
    assert offsite.store.files_holding(marker) == []


def test_a_second_run_changes_nothing(offsite: OffsiteHosts) -> None:
    second = offsite.deploy("sftp", "--json")

    assert changed_operations(second.stdout) == []
