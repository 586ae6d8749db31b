"""Job offsite_copy against a real restic repository: after each backup, tagged, dated,
encrypted, once only, caught up after a failure, never showing a credential."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from socle_agent.jobs import run_job
from socle_agent.manifest import verify_files
from socle_agent.offsite import records
from socle_agent.state import load_state

from tests.agent.conftest import Mailbox, PgCluster, free_bytes, mail_toml
from tests.agent.offsite.conftest import OffsiteNode, make_node
from tests.agent.offsite_repository import RestServer
from tests.standins.silent_api import SilentApi


def store_files_holding(root: Path, text: str) -> list[Path]:
    needle = text.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_backup_goes_off_site_after_it_is_taken_tagged_dated_and_encrypted(
    node: OffsiteNode, rest_server: RestServer
) -> None:
    done = node.agent("backup", "postgres")

    assert done.returncode == 0, done.stderr
    [backup] = node.backups("postgres")
    [snapshot] = node.snapshots()
    assert snapshot["tags"] == ["kind=postgres", "database=shop", f"backup={backup.manifest.id}"]
    assert snapshot["paths"] == [str(backup.path)]
    assert abs(records_time(snapshot) - backup.manifest.finished) < 1
    state = load_state(node.config().agent.state_file)
    assert state["jobs"]["offsite_copy"]["status"] == "ok"
    # in clear in the local backup (roles and the manifest), nowhere off-site
    assert b"shop_reader" in (backup.path / "globals.sql").read_bytes()
    assert store_files_holding(rest_server.root, "shop_reader") == []
    assert store_files_holding(rest_server.root, "public.customers") == []

    again = node.agent("copy", "offsite")

    assert again.returncode == 0, again.stderr
    assert "0 backups sent" in again.stdout and "1 were there already" in again.stdout
    assert len(node.snapshots()) == 1


def records_time(snapshot: dict[str, object]) -> float:
    from socle_agent.offsite.restic import parse_time

    return parse_time(str(snapshot["time"]))


def test_what_the_state_forgot_is_read_again_from_the_repository(node: OffsiteNode) -> None:
    assert node.agent("snapshot", "k3s").returncode == 0
    assert node.agent("backup", "postgres").returncode == 0
    config = node.config()
    state = load_state(config.agent.state_file)
    del state["offsite"]
    config.agent.state_file.write_text(__import__("json").dumps(state))

    again = node.agent("copy", "offsite")

    assert again.returncode == 0, again.stderr
    assert "0 backups sent" in again.stdout and "2 were there already" in again.stdout
    newest = records.load(config)["newest"]
    assert sorted(newest) == ["k3s/k3s", "postgres/shop"]


def test_the_newest_backups_go_first_and_a_missed_one_is_caught_up(node: OffsiteNode) -> None:
    node.rewrite("[offsite]\n", "[offsite]\ncopy_after_backup = false\n")
    for _ in range(2):
        assert node.agent("backup", "postgres").returncode == 0
        time.sleep(1.1)  # two backups, two different seconds
    assert node.snapshots() == []

    done = node.agent("copy", "offsite")

    assert done.returncode == 0, done.stderr
    assert "2 backups sent" in done.stdout
    older, newer = (b.manifest.id for b in node.backups("postgres"))
    assert done.stderr.index(f"postgres/{newer} sent") < done.stderr.index(
        f"postgres/{older} sent")
    assert sorted(str(s["tags"]) for s in node.snapshots()) == sorted(
        str(["kind=postgres", "database=shop", f"backup={i}"]) for i in (older, newer))


def test_list_shows_what_is_off_site_beside_what_is_local(node: OffsiteNode) -> None:
    assert node.agent("backup", "postgres").returncode == 0
    assert node.agent("snapshot", "k3s").returncode == 0
    gone = node.backups("k3s")[0]
    subprocess.run(["rm", "-rf", str(gone.path)], check=True)

    listed = node.agent("list", "--offsite")

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[-1] == "WHERE"
    [pg_line] = [line for line in lines if " postgres " in line]
    [k3s_line] = [line for line in lines if gone.manifest.id in line]
    assert pg_line.endswith("local+offsite") and k3s_line.endswith(" offsite")
    plain = node.agent("list").stdout
    assert gone.manifest.id not in plain and "WHERE" not in plain


def test_an_unreachable_host_fails_the_copy_once_by_mail_and_the_next_run_catches_up(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path, template_db: Path,
    smtp: Mailbox,
) -> None:
    with RestServer(tmp_path / "store") as server:
        files = server.node_files(tmp_path / "etc-offsite", host="lonely")
        node = make_node(tmp_path, pg, pg_password_file, files, template_db, mail_toml(smtp))
        server.stop()

        first = node.agent("backup", "postgres")
        second = node.agent("copy", "offsite")
        state = load_state(node.config().agent.state_file)["jobs"]["offsite_copy"]
        [kept] = node.backups("postgres")
        server.start()
        caught_up = node.agent("copy", "offsite")

    assert first.returncode == 0, first.stderr  # the backup itself is fine
    assert second.returncode == 1 and "restic snapshots failed" in second.stderr
    assert state["status"] == "failed" and state["consecutive_failures"] == 2
    assert verify_files(kept.path, kept.manifest) == []
    assert caught_up.returncode == 0 and "1 backups sent" in caught_up.stdout
    assert smtp.subjects() == ["[socle] offsite_copy FAILED", "[socle] offsite_copy recovered"]
    assert server.password not in smtp.messages[0].get_payload(decode=True).decode()  # type: ignore[union-attr]


def test_a_silent_host_is_given_up_at_the_calls_deadline(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path, template_db: Path,
) -> None:
    with SilentApi() as silent:
        files_dir = tmp_path / "etc-offsite"
        from tests.agent.offsite_repository import write_node_files

        files = write_node_files(files_dir, {
            "SOCLE_OFFSITE_HOST": "node", "SOCLE_OFFSITE_LIMIT_UPLOAD_KIB": "0",
            "RESTIC_REPOSITORY": f"rest:http://127.0.0.1:{silent.port}/node/"}, "password-x")
        node = make_node(tmp_path, pg, pg_password_file, files, template_db, call_timeout=3)
        started = time.monotonic()

        result = run_job("offsite_copy", node.config())

    assert result.status == "failed"
    assert "did not finish within 3 s and was stopped" in result.error
    assert time.monotonic() - started < 30


def test_no_credential_in_a_command_line_or_a_log(
    node: OffsiteNode, rest_server: RestServer, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socle_agent.offsite.restic as restic_module

    seen: list[list[str]] = []
    real = restic_module.run_program

    def spy(argv: list[str], *args: object, **kwargs: object) -> list[str]:
        seen.append(list(argv))
        return real(argv, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(restic_module, "run_program", spy)
    caplog.set_level(logging.DEBUG)
    assert run_job("postgres_backup", node.config()).status == "ok"
    rest_server.stop()
    try:
        failed = run_job("offsite_copy", node.config(), options={"relist": True})
    finally:
        rest_server.start()

    secrets = [rest_server.password, node.files.password,
               node.files.values["RESTIC_REPOSITORY"].split("@")[0].split(":")[-1]]
    assert failed.status == "failed"
    assert seen and all(argv[0] == "restic" for argv in seen)
    written = " ".join(" ".join(argv) for argv in seen) + caplog.text + failed.error + (
        node.config().agent.state_file.read_text())
    for secret in secrets:
        assert secret not in written
    assert "***" in failed.error or "127.0.0.1" in failed.error


def test_a_full_disk_off_site_fails_the_copy_and_the_next_run_sends_it(
    tmp_path: Path, pg: PgCluster, shop_db: str, pg_password_file: Path, template_db: Path,
    small_fs: Callable[[int], Path],
) -> None:
    with RestServer(small_fs(24)) as server:
        files = server.node_files(tmp_path / "etc-offsite", host="full")
        # restic retries a failed upload for about 45 s: the call's deadline comes first
        node = make_node(tmp_path, pg, pg_password_file, files, template_db,
                         transfer_timeout=8)
        filler = server.root / "filler"
        subprocess.run(["fallocate", "-l", str(free_bytes(server.root) - 64 * 1024),
                        str(filler)], check=True)

        full = node.agent("backup", "postgres")
        state = load_state(node.config().agent.state_file)["jobs"]["offsite_copy"]
        filler.unlink()
        again = node.agent("copy", "offsite")

    assert full.returncode == 0, full.stderr
    assert state["status"] == "failed"
    assert "restic backup did not finish within 8 s and was stopped" in state["error"]
    assert "500 Internal Server Error" in state["error"]
    assert "0 of 1 backups sent before that" in state["error"]
    assert again.returncode == 0 and "1 backups sent" in again.stdout, again.stderr
