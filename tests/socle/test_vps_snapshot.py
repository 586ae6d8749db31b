"""The VPS snapshot through the real ``ovh`` client, against the API stand-in.

The stand-in (tests/standins/ovh_api.py) answers at the API's real paths and checks each
request's signature, so the credentials, the paths and the task handling are the client's
own. The real API is tried by tests/socle/test_vps_snapshot_real.py where credentials are
given.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ovh
import pytest

from socle.inventory_checks import InventoryDataError
from socle.vps_snapshot import (
    OvhCredentials,
    Snapshot,
    SnapshotDeclined,
    VpsSnapshotError,
    VpsSnapshots,
    VpsSnapshotSettings,
    api_client,
    snapshot_before_upgrade,
    vps_snapshot_settings,
)
from tests.sops_files import write_sops_file
from tests.standins.ovh_api import OvhApiStandIn

SERVICE = "vps-1a2b3c4d.vps.ovh.net"
ENDPOINT = "socle-standin"
OLD = {"id": "snapshot-1", "description": "last week", "creationDate": "2025-01-24T02:00:00Z"}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[OvhApiStandIn]:
    with OvhApiStandIn(SERVICE) as standin:
        # The real client, pointed at the stand-in as one more API region.
        monkeypatch.setitem(ovh.client.ENDPOINTS, ENDPOINT, standin.endpoint)
        yield standin


def settings(timeout: int = 600) -> VpsSnapshotSettings:
    return VpsSnapshotSettings(SERVICE, ENDPOINT, "unused.sops.yaml", True, timeout)


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def snapshots_of(
    api: OvhApiStandIn, lines: list[str], *, timeout: int = 600, secret: str | None = None
) -> VpsSnapshots:
    credentials = OvhCredentials(
        api.application_key, secret or api.application_secret, api.consumer_key
    )
    clock = FakeClock()
    return VpsSnapshots(
        api_client(settings(timeout), credentials), settings(timeout),
        echo=lines.append, poll_seconds=10, clock=clock, sleep=clock.sleep,
    )  # fmt: skip


@pytest.mark.parametrize("show_done", [False, True], ids=["task-gone-when-done", "task-done"])
def test_a_first_snapshot_is_taken_and_timed(api: OvhApiStandIn, show_done: bool) -> None:
    api.state.show_done = show_done
    lines: list[str] = []

    taken = snapshots_of(api, lines).take("before the upgrade", replace=lambda old: False)

    assert taken.replaced is None
    assert taken.snapshot.description == "before the upgrade"
    assert taken.seconds == 10  # one poll interval on the fake clock
    assert [call for call in api.state.calls if call != "GET /snapshot"] == [
        "POST /createSnapshot", "GET /tasks/1001", "GET /tasks/1001",
    ]  # fmt: skip
    assert lines[1:] == ["createSnapshot: doing 50% (0 s)", "createSnapshot: done in 10 s"]


def test_an_existing_snapshot_is_kept_when_the_operator_declines(api: OvhApiStandIn) -> None:
    api.state.snapshot = dict(OLD)
    asked: list[str] = []

    def decline(old: Snapshot) -> bool:
        asked.append(old.describe())
        return False

    with pytest.raises(SnapshotDeclined, match="nothing changed"):
        snapshots_of(api, []).take("new", replace=decline)

    assert asked == ["from 2025-01-24T02:00:00Z ('last week')"]
    assert api.state.snapshot == OLD
    assert api.state.calls == ["GET /snapshot"]


def test_an_existing_snapshot_is_deleted_then_replaced(api: OvhApiStandIn) -> None:
    api.state.snapshot = dict(OLD)
    lines: list[str] = []

    taken = snapshots_of(api, lines).take("new", replace=lambda old: True)

    assert taken.replaced is not None and taken.replaced.snapshot_id == "snapshot-1"
    assert api.state.snapshot is not None and api.state.snapshot["description"] == "new"
    assert api.state.calls.index("DELETE /snapshot") < api.state.calls.index("POST /createSnapshot")
    assert any(line.startswith("deleting the snapshot from 2025-01-24") for line in lines)


def test_a_failed_task_is_reported_with_its_id(api: OvhApiStandIn) -> None:
    api.state.failing["createSnapshot"] = "error"

    with pytest.raises(VpsSnapshotError, match=r"task 1001 \(createSnapshot\).*'error'"):
        snapshots_of(api, []).take("new", replace=lambda old: True)


def test_a_task_past_its_deadline_stops_the_wait_and_says_it_goes_on(api: OvhApiStandIn) -> None:
    api.state.stuck.add("createSnapshot")
    snapshots = snapshots_of(api, [], timeout=60)

    with pytest.raises(VpsSnapshotError, match=r"still doing at 0% after 60 s.*goes on at OVH"):
        snapshots.take("new", replace=lambda old: True)

    assert snapshots.clock() == 60


def test_wrong_credentials_are_named_as_such(api: OvhApiStandIn) -> None:
    with pytest.raises(VpsSnapshotError, match="API keys in the SOPS file are wrong"):
        snapshots_of(api, [], secret="not-the-secret").take("new", replace=lambda old: True)


def test_a_vps_without_the_snapshot_option_gets_the_apis_reason(api: OvhApiStandIn) -> None:
    api.state.snapshot_option = False

    with pytest.raises(VpsSnapshotError, match="snapshot option is not enabled"):
        snapshots_of(api, []).take("new", replace=lambda old: True)


def test_revert_asks_first_and_puts_the_snapshot_back(api: OvhApiStandIn) -> None:
    api.state.snapshot = dict(OLD)

    with pytest.raises(SnapshotDeclined):
        snapshots_of(api, []).revert(confirm=lambda snapshot: False)
    assert api.state.reverted_to == []

    snapshot, seconds = snapshots_of(api, []).revert(confirm=lambda snapshot: True)

    assert api.state.reverted_to == ["snapshot-1"]
    assert snapshot.snapshot_id == "snapshot-1" and seconds == 10


def test_revert_without_a_snapshot_is_refused(api: OvhApiStandIn) -> None:
    with pytest.raises(VpsSnapshotError, match="has no snapshot to revert to"):
        snapshots_of(api, []).revert(confirm=lambda snapshot: True)


def upgrade_data(tmp_path: Path, api: OvhApiStandIn, enabled: bool) -> dict[str, Any]:
    sops_file, key_file = write_sops_file(tmp_path, {
        "ovh_application_key": api.application_key,
        "ovh_application_secret": api.application_secret,
        "ovh_consumer_key": api.consumer_key,
    })  # fmt: skip
    return {
        "ovh_vps": {"service_name": SERVICE, "endpoint": ENDPOINT, "sops_file": str(sops_file),
                    "snapshot_before_upgrade": enabled, "timeout_seconds": 60},
        "key_file": key_file,
    }  # fmt: skip


def test_the_upgrade_takes_one_first_with_credentials_from_sops(
    api: OvhApiStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = upgrade_data(tmp_path, api, enabled=True)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(data["key_file"]))
    monkeypatch.setattr("socle.vps_snapshot.POLL_SECONDS", 0.01)
    api.state.snapshot = dict(OLD)
    lines: list[str] = []

    taken = snapshot_before_upgrade(data, "before k3s v1.34.1+k3s1", echo=lines.append)

    assert taken is not None and taken.replaced is not None
    assert taken.snapshot.description.startswith("before k3s v1.34.1+k3s1 ")
    assert (
        lines[0] == "replacing the VPS's snapshot from 2025-01-24T02:00:00Z ('last week'): "
        "OVH keeps one per VPS"
    )
    assert lines[-1].startswith(f"snapshot of {SERVICE} taken in ")


def test_the_upgrade_takes_none_unless_the_inventory_asks(
    api: OvhApiStandIn, tmp_path: Path
) -> None:
    assert snapshot_before_upgrade(upgrade_data(tmp_path, api, enabled=False), "x") is None
    assert snapshot_before_upgrade({}, "x") is None
    assert api.state.calls == []


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ("not a table", "ovh_vps", "expected a table"),
        ({"service_name": "vps-1/../../me", "sops_file": "s"}, "ovh_vps.service_name", "not a VPS"),
        ({"service_name": "vps-1", "sops_file": "s", "endpoint": "moon"}, "ovh_vps.endpoint",
         "not an OVH API region"),
        ({"service_name": "vps-1"}, "ovh_vps.sops_file", "required"),
        ({"service_name": "vps-1", "sops_file": "s", "timeout_seconds": 0},
         "ovh_vps.timeout_seconds", "not a number of seconds"),
        ({"service_name": "vps-1", "sops_file": "s", "snapshot_before_upgrade": "yes"},
         "ovh_vps.snapshot_before_upgrade", "True or False"),
        ({"service_name": "vps-1", "sops_file": "s", "snapshot": True}, "ovh_vps.snapshot",
         "unknown key"),
    ],
)  # fmt: skip
def test_bad_inventory_data_is_refused_naming_the_key(table: Any, key: str, problem: str) -> None:
    with pytest.raises(InventoryDataError) as raised:
        vps_snapshot_settings({"ovh_vps": table})

    assert raised.value.key == key
    assert problem in raised.value.problem
