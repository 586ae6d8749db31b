"""The agent's off-site copies proven on test hosts: sent by the daemon inside its sandbox,
encrypted, drilled, checked; faults of the off-site host; and the node's loss, recovered
on a fresh host from the inventory, the SOPS keys and the off-site repository alone.

Hosts: ``oa-node`` (PostgreSQL's stand-in, a stand-in k3s datastore, deploys/offsite.py
and deploys/agent.py), ``oa-store`` (tests/hosts/offsite_store.py: rclone's append-only
REST server; its repositories on a small filesystem of their own, so it can be filled),
and, once the node is destroyed, ``oa-fresh``, which takes the node's inventory name.
The agent mails a receiver on this machine. The tests run in order.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.agent.conftest import Mailbox, _Collect, free_port
from tests.harness.hosts import Harness, TestHost
from tests.hosts.offsite_store import OffsiteStore, new_key_pair, set_up_store
from tests.hosts.probes import wait_until
from tests.sops_files import write_sops_file
from tests.standins.k3s_datastore import create_datastore, install_server

pytestmark = pytest.mark.host

NODE = "oa-node"
REST_ROOT = "/srv/socle-restic/rest"
REPOSITORY = REST_ROOT  # the node's REST URL names this folder
STORE_MIB = 192
SCHEDULED = ("k3s_snapshot", "postgres_backup", "offsite_copy", "offsite_check",
             "offsite_drill")  # fmt: skip
MARKER_SQL = (
    "INSERT INTO orders (customer, total, detail) SELECT '{marker} ' || g, g, "
    "jsonb_build_object('written', 'before the loss') FROM generate_series(1, 250) g"
)
DIGEST_SQL = "SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o"


@dataclass
class Site:
    harness: Harness
    node: TestHost
    store: OffsiteStore
    workdir: Path
    data: dict[str, Any]
    mailbox: Mailbox
    k3s_files: dict[str, bytes]

    def hosts_file(self, host: TestHost, name: str = "hosts") -> Path:
        """The inventory: ``host`` under the node's inventory name."""
        entry = host.inventory_entry(self.data)
        entry["name"] = NODE
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps({"hosts": [entry]}))
        return path

    def deploy(self, host: TestHost, *deploys: str) -> None:
        for deploy in deploys:
            self.harness.run_pyinfra(self.hosts_file(host), deploy)


def agent(host: TestHost, *args: str, check: bool = True) -> Any:
    """``socle-agent ARGS`` as root on ``host``, as an operator runs it."""
    return host.exec(["socle-agent", *args], check=check)


def psql(host: TestHost, sql: str) -> str:
    return str(host.exec(["runuser", "-u", "postgres", "--", "psql", "-tA", "-d", "app", "-c",
                          sql]).stdout.strip())


def state(host: TestHost) -> dict[str, Any]:
    text = host.exec("cat /var/lib/socle-agent/state.json", check=False).stdout
    return dict(json.loads(text)) if text.strip() else {}


def metrics(host: TestHost) -> str:
    return str(host.exec("curl -sf --max-time 5 http://127.0.0.1:9464/metrics").stdout)


def journal(host: TestHost) -> str:
    return str(host.exec("journalctl -u socle-agent --no-pager -o cat", check=False).stdout)


def wait_for_daemon(host: TestHost, jobs: tuple[str, ...], after: float = 0.0) -> None:
    """Until the daemon has run each of ``jobs`` (since ``after``) and is idle again."""

    def done() -> bool:
        records = state(host).get("jobs", {})
        ran = all(records.get(job, {}).get("last_run", 0) > after for job in jobs)
        status = host.exec("systemctl show -p StatusText --value socle-agent").stdout.strip()
        return ran and status == "idle"

    wait_until(done, f"the agent's daemon to run {', '.join(jobs)}", timeout=600)


def run_in_daemon(host: TestHost, job: str) -> float:
    """Have the daemon run ``job`` as a missed scheduled run: forget its last success,
    restart the agent (its catch-up runs it) and wait; returns when it was asked."""
    host.exec("systemctl stop socle-agent")
    host.exec(["python3", "-c",
               "import json, sys; p = '/var/lib/socle-agent/state.json'; s = json.load(open(p)); "
               "s['jobs'][sys.argv[1]].pop('last_success', None); json.dump(s, open(p, 'w'))",
               job])  # fmt: skip
    asked = float(host.exec("date +%s.%N").stdout)
    host.exec("systemctl start socle-agent")
    wait_for_daemon(host, (job,), after=asked)
    return asked


def put_tree(host: TestHost, root: Path, own: str) -> None:
    """Copy the files under ``root`` to the same paths on ``host``; folders under one
    named ``own`` are made 0700 (the host's own /etc and /var are left as they are)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if path.is_dir() and own not in relative.parts:
                continue
            info = tar.gettarinfo(str(path), arcname=str(relative))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o700 if path.is_dir() else 0o600
            if path.is_dir():
                tar.addfile(info)
            else:
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
    host.container.put_archive("/", buffer.getvalue())


def site_data(store: OffsiteStore, sops_file: Path, mail: Mailbox) -> dict[str, Any]:
    address = store.host.address
    return {
        "standin_postgres_password": "",  # filled below
        "offsite": {
            "destination": "rest",
            "rest": {"url": f"http://{address}:8000/rest/", "user": NODE, "insecure_http": True},
            "sftp": {"host": address, "user": "socle-offsite", "host_key": store.host_key},
            "sops_file": str(sops_file),
        },
        "agent_secrets": [{"path": "/etc/socle/postgres-password", "sops_file": str(sops_file),
                           "key": "postgres_password"}],
        "agent_settings": {
            "schedule": {"k3s_snapshot": "daily at 03:00", "postgres_backup": "daily at 02:30",
                         "offsite_copy": "daily at 04:00",
                         "offsite_check": "weekly on saturday at 03:00",
                         "offsite_drill": "weekly on sunday at 06:00"},
            "postgres": {"host": "127.0.0.1", "user": "postgres", "databases": ["app"],
                         "password_file": "/etc/socle/postgres-password",
                         "bin_dir": "/usr/lib/postgresql/15/bin",
                         # rows in clear in the local backup: off-site, they must not be
                         "compression": "none"},
            "offsite": {"call_timeout_seconds": 20, "transfer_timeout_seconds": 25,
                        "check_read_data_percent": 100},
            "drill": {"rto_seconds": {"postgres": 600, "k3s": 600},
                      "rpo_seconds": {"postgres": 93600, "k3s": 93600}},
            "metrics": {"listen": "127.0.0.1", "port": 9464},
            "mail": {"host": mail.host, "port": mail.port, "security": "none",
                     "from": "socle-agent@oa-node.invalid", "to": ["ops@oa-node.invalid"]},
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def site(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("offsite-agent")
    node = harness.start(NODE, networks=("public",))
    store_host = harness.start("oa-store", networks=("public",))
    # the off-site repositories on a small filesystem of their own: it can be filled
    store_host.exec(f"mkdir -p {REST_ROOT} && mount -t tmpfs -o size={STORE_MIB}m,mode=0700 "
                    f"tmpfs {REST_ROOT}")  # fmt: skip
    node_key, node_public_key = new_key_pair(workdir, "node")
    rest_password = "p@ss:" + secrets.token_hex(8)
    store = set_up_store(store_host, node_public_key, NODE, rest_password, workdir)
    postgres_password = secrets.token_urlsafe(18)
    sops_file, key_file = write_sops_file(workdir, {
        "offsite_restic_password": secrets.token_urlsafe(24),
        "offsite_rest_password": rest_password,
        "offsite_ssh_private_key": node_key.read_text(),
        "postgres_password": postgres_password,
    })  # fmt: skip
    box = Mailbox(harness.gateway("public"), free_port())
    controller = Controller(_Collect(box), hostname=box.host, port=box.port)
    controller.start()
    data = site_data(store, sops_file, box)
    data["standin_postgres_password"] = postgres_password
    server_root = workdir / "k3s-node"
    template = create_datastore(workdir / "template.db", rows=400)
    _, _, k3s_files = install_server(server_root, template)
    try:
        with pytest.MonkeyPatch.context() as environment:
            environment.setenv("SOPS_AGE_KEY_FILE", str(key_file))
            test_site = Site(harness, node, store, workdir, data, box, k3s_files)
            put_tree(node, server_root, own="rancher")
            # the agent last: its first start catches every scheduled job up at once
            test_site.deploy(node, "tests/hosts/deploys/postgres_standin.py",
                             "deploys/offsite.py", "deploys/agent.py")
            wait_for_daemon(node, SCHEDULED)
            yield test_site
    finally:
        controller.stop()
        for name in (NODE, "oa-store", "oa-fresh"):
            if name in harness.hosts:
                harness.remove(harness.hosts[name])


def test_the_daemon_sends_every_new_backup_off_site_from_inside_its_sandbox(site: Site) -> None:
    node = site.node
    records = state(node)["jobs"]
    snapshots = json.loads(node.exec(f"socle-offsite-restic snapshots --json --host {NODE}")
                           .stdout)
    local = {line.split()[0] for line in agent(node, "list").stdout.splitlines()[1:]}

    for job in SCHEDULED:
        assert records[job]["status"] == "ok", (job, records[job].get("error"), journal(node))
    assert node.exec("systemctl show -p NRestarts --value socle-agent").stdout.strip() == "0"
    assert sorted(s["tags"][0] for s in snapshots) == ["kind=k3s", "kind=postgres"]
    assert [s["tags"][1] for s in snapshots if s["tags"][0] == "kind=postgres"] == [
        "database=app"]
    assert {s["tags"][-1].removeprefix("backup=") for s in snapshots} == local


def test_the_copies_off_site_hold_no_readable_row(site: Site) -> None:
    node = site.node
    marker = "ROW-" + secrets.token_hex(6)
    psql(node, MARKER_SQL.format(marker=marker))

    agent(node, "backup", "postgres")

    in_clear = node.exec(f"grep -rl {marker} /var/backups/socle/postgres", check=False).stdout
    assert in_clear.strip(), "the uncompressed local dump holds the rows in clear"
    assert site.store.files_holding(marker) == []
    assert site.store.files_holding("customer 4999") == []
    assert state(node)["jobs"]["offsite_copy"]["status"] == "ok"


def test_an_off_site_drill_passes_and_its_time_is_in_the_metrics(site: Site) -> None:
    drill = agent(site.node, "drill", "offsite", check=False)

    assert drill.returncode == 0, drill.stdout + drill.stderr
    shown = metrics(site.node)
    for labels in ('kind="postgres",subject="app"', 'kind="k3s",subject="k3s"'):
        assert f"socle_offsite_drill_last_result{{{labels}}} 1.0" in shown
        [duration] = [line for line in shown.splitlines()
                      if line.startswith(f"socle_offsite_drill_last_duration_seconds{{{labels}}}")]
        assert float(duration.split()[-1]) > 0
    # (prometheus_client writes the labels sorted)
    assert 'socle_offsite_newest_backup_info{backup="app-' in shown


def test_list_shows_what_is_off_site_beside_what_is_local(site: Site) -> None:
    listed = agent(site.node, "list", "--offsite").stdout.splitlines()

    assert listed[0].split()[-1] == "WHERE"
    assert all(line.endswith("local+offsite") for line in listed[1:]), listed


def test_an_unreachable_off_site_host_fails_the_copy_with_one_mail_and_is_caught_up(
    site: Site,
) -> None:
    node, store = site.node, site.store.host
    before = node.exec("find /var/backups/socle -type f -exec sha256sum {} + | sort").stdout
    # the host stops answering (packets dropped, as with a dead link)
    store.exec("iptables -I INPUT -p tcp --dport 8000 -j DROP")
    try:
        backup = agent(node, "backup", "postgres", check=False)
        again = agent(node, "copy", "offsite", check=False)
        record = state(node)["jobs"]["offsite_copy"]
        kept = node.exec("find /var/backups/socle -type f -exec sha256sum {} + | sort").stdout
    finally:
        store.exec("iptables -D INPUT -p tcp --dport 8000 -j DROP")
    caught_up = agent(node, "copy", "offsite", check=False)

    assert backup.returncode == 0, backup.stderr
    assert again.returncode == 1 and "did not finish within" in again.stderr
    assert record["consecutive_failures"] == 2
    assert set(before.splitlines()) <= set(kept.splitlines())  # nothing local changed
    assert caught_up.returncode == 0 and "1 backups sent" in caught_up.stdout, caught_up.stderr
    subjects = site.mailbox.subjects()
    assert subjects.count("[socle] offsite_copy FAILED") == 1
    assert subjects[-1] == "[socle] offsite_copy recovered"


def test_the_scheduled_check_names_a_corrupted_pack_file(site: Site) -> None:
    node, store = site.node, site.store.host
    pack = store.exec(f"find {REPOSITORY}/data -type f -size +20k | head -1").stdout.strip()
    name = pack.removeprefix(f"{REPOSITORY}/")
    store.exec(f"cp -p {pack} /root/pack.saved && printf 'XXXX' | "
               f"dd of={pack} bs=1 seek=4096 conv=notrunc status=none")  # fmt: skip
    try:
        run_in_daemon(node, "offsite_check")
        record = state(node)
    finally:
        store.exec(f"cp -p /root/pack.saved {pack}")

    assert record["jobs"]["offsite_check"]["status"] == "failed"
    assert name in record["jobs"]["offsite_check"]["error"]
    assert record["offsite"]["check"]["damaged"] == [name]
    [mail] = [m for m in site.mailbox.messages if m["Subject"] == "[socle] offsite_check FAILED"]
    assert name in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "socle_offsite_check_last_result 0.0" in metrics(node)


def test_a_full_disk_off_site_fails_the_copy_and_the_next_run_sends_it(site: Site) -> None:
    node, store = site.node, site.store.host
    free = int(store.exec(f"df --output=avail -B1 {REST_ROOT} | tail -1").stdout)
    store.exec(f"fallocate -l {free - 16 * 1024} {REST_ROOT}/filler")
    try:
        full = agent(node, "snapshot", "k3s", check=False)
        record = state(node)["jobs"]["offsite_copy"]
    finally:
        store.exec(f"rm -f {REST_ROOT}/filler")
    sent = agent(node, "copy", "offsite", check=False)

    assert full.returncode == 0, full.stderr
    assert record["status"] == "failed"
    assert "500 Internal Server Error" in record["error"], record["error"]
    assert sent.returncode == 0 and "1 backups sent" in sent.stdout, sent.stderr


def test_the_node_lost_a_fresh_host_restores_the_newest_backup_from_off_site(
    site: Site,
) -> None:
    node = site.node
    marker = "LOST-" + secrets.token_hex(6)
    psql(node, MARKER_SQL.format(marker=marker))
    agent(node, "backup", "postgres")
    agent(node, "snapshot", "k3s")
    digest = psql(node, DIGEST_SQL)
    newest = {line.split()[1]: line.split()[0]
              for line in agent(node, "list").stdout.splitlines()[1:]}
    site.harness.remove(node)  # the container and its disk

    fresh = site.harness.start("oa-fresh", networks=("public",))
    site.deploy(fresh, "tests/hosts/deploys/postgres_standin.py", "deploys/offsite.py",
                "deploys/agent.py")
    wait_for_daemon(fresh, ("postgres_backup",))
    listed = agent(fresh, "list", "--offsite").stdout
    restored = agent(fresh, "restore", "postgres", "--from", "offsite", "--backup",
                     newest["postgres"], "--database", "app", "--replace", check=False)
    k3s = agent(fresh, "restore", "k3s", "--from", "offsite", "--snapshot", newest["k3s"],
                check=False)

    assert newest["postgres"] in listed and newest["k3s"] in listed
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert psql(fresh, DIGEST_SQL) == digest
    assert psql(fresh, f"SELECT count(*) FROM orders WHERE customer LIKE '{marker}%'") == "250"
    assert k3s.returncode == 0, k3s.stdout + k3s.stderr
    token = fresh.exec("cat /var/lib/rancher/k3s/server/token").stdout
    assert token.encode() == site.k3s_files["token"]
