"""`socle snapshot-vps` on an inventory file, against the OVH API stand-in.

The real ``ovh`` client is pointed at the stand-in (tests/standins/ovh_api.py) as one more
API region; the API keys come from a real SOPS file. The command reads the inventory with
pyinfra's loader, which patches the process with gevent; it is imported first, so the
stand-in's server runs as a greenlet beside the command.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import ovh
import pyinfra_cli  # noqa: F401  (gevent patches the process now, before the stand-in's thread)
import pytest

from socle_cli.main import main
from tests.sops_files import write_sops_file
from tests.standins.ovh_api import OvhApiStandIn

SERVICE = "vps-1a2b3c4d.vps.ovh.net"
OLD = {"id": "snapshot-1", "description": "last week", "creationDate": "2025-01-24T02:00:00Z"}


class Terminal(io.StringIO):
    """The operator's answers, typed at a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OvhApiStandIn]:
    """The stand-in API, and an inventory whose VPS uses it, in the current directory."""
    with OvhApiStandIn(SERVICE) as standin:
        monkeypatch.setitem(ovh.client.ENDPOINTS, "socle-standin", standin.endpoint)
        monkeypatch.setattr("socle.vps_snapshot.POLL_SECONDS", 0.01)
        monkeypatch.chdir(tmp_path)
        sops_file, key_file = write_sops_file(tmp_path, {
            "ovh_application_key": standin.application_key,
            "ovh_application_secret": standin.application_secret,
            "ovh_consumer_key": standin.consumer_key,
        })  # fmt: skip
        monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
        (tmp_path / "inventories" / "group_data").mkdir(parents=True)
        (tmp_path / "inventories" / "site.py").write_text(
            'site = [("vps", {"ssh_hostname": "198.51.100.7"})]\n'
        )
        (tmp_path / "inventories" / "group_data" / "site.py").write_text(
            f'ovh_vps = {{"service_name": "{SERVICE}", "endpoint": "socle-standin", '
            f'"sops_file": "{sops_file}", "timeout_seconds": 60}}\n'
        )
        yield standin


def snapshot_vps(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    answer: str | None = None,
) -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", Terminal(answer) if answer is not None else io.StringIO())
    code = main(["snapshot-vps", "--inventory", "inventories/site.py", *args])
    return code, capsys.readouterr().err


def test_a_snapshot_is_taken_and_its_time_printed(
    api: OvhApiStandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = snapshot_vps(monkeypatch, capsys, "--description", "by hand")

    assert code == 0, err
    assert api.state.snapshot is not None and api.state.snapshot["description"] == "by hand"
    assert "createSnapshot: doing 50%" in err
    assert f"snapshot of {SERVICE} taken in 0 s" in err


def test_replacing_says_so_and_asks_first(
    api: OvhApiStandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.state.snapshot = dict(OLD)

    declined, err = snapshot_vps(monkeypatch, capsys, answer="n\n")

    assert declined == 1
    assert "already has a snapshot from 2025-01-24T02:00:00Z ('last week')" in err
    assert "until the new one is done the VPS has none" in err
    assert "Replace it? [y/N]" in err and "nothing changed" in err
    assert api.state.snapshot == OLD

    accepted, err = snapshot_vps(monkeypatch, capsys, answer="yes\n")

    assert accepted == 0, err
    assert api.state.snapshot is not None and api.state.snapshot["id"] != "snapshot-1"


def test_without_a_terminal_replacing_needs_yes(
    api: OvhApiStandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.state.snapshot = dict(OLD)

    refused, err = snapshot_vps(monkeypatch, capsys)
    assert refused == 1 and "pass --yes to confirm" in err
    assert api.state.snapshot == OLD

    replaced, err = snapshot_vps(monkeypatch, capsys, "--yes")
    assert replaced == 0, err
    assert api.state.calls.count("DELETE /snapshot") == 1


def test_revert_needs_the_vps_name_typed(
    api: OvhApiStandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.state.snapshot = dict(OLD)

    wrong, err = snapshot_vps(monkeypatch, capsys, "--revert", answer="y\n")
    assert wrong == 1 and "everything written on the VPS since then is lost" in err
    assert api.state.reverted_to == []

    typed, err = snapshot_vps(monkeypatch, capsys, "--revert", answer=f"{SERVICE}\n")
    assert typed == 0, err
    assert api.state.reverted_to == ["snapshot-1"]
    assert f"{SERVICE} reverted to its snapshot from 2025-01-24T02:00:00Z" in err


def test_a_failed_task_fails_the_command(
    api: OvhApiStandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.state.failing["createSnapshot"] = "error"

    code, err = snapshot_vps(monkeypatch, capsys)

    assert code == 1
    assert "task 1001 (createSnapshot)" in err and "'error'" in err
