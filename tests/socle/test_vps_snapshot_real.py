"""The VPS snapshot against the real OVH API, where credentials are given.

The OVH API cannot be reached on the machines that run this suite, so the test is
opt-in: set SOCLE_OVH_SERVICE_NAME (the VPS), SOCLE_OVH_APPLICATION_KEY,
SOCLE_OVH_APPLICATION_SECRET, SOCLE_OVH_CONSUMER_KEY and, if not ovh-eu,
SOCLE_OVH_ENDPOINT. Reading the snapshot changes nothing; taking one replaces the VPS's
snapshot, so it also needs SOCLE_OVH_ALLOW_SNAPSHOT=1. Elsewhere both are reported as
skipped, and tests/socle/test_vps_snapshot.py proves the same calls against the stand-in.
"""

from __future__ import annotations

import os

import pytest

from socle.vps_snapshot import (
    OvhCredentials,
    VpsSnapshots,
    VpsSnapshotSettings,
    api_client,
    default_description,
)

pytestmark = pytest.mark.internet

NAMES = ("SOCLE_OVH_SERVICE_NAME", "SOCLE_OVH_APPLICATION_KEY", "SOCLE_OVH_APPLICATION_SECRET",
         "SOCLE_OVH_CONSUMER_KEY")  # fmt: skip


@pytest.fixture
def snapshots() -> VpsSnapshots:
    missing = [name for name in NAMES if not os.environ.get(name)]
    if missing:
        pytest.skip(f"no OVH API credentials here: set {', '.join(missing)} to try the real API")
    settings = VpsSnapshotSettings(
        service_name=os.environ["SOCLE_OVH_SERVICE_NAME"],
        endpoint=os.environ.get("SOCLE_OVH_ENDPOINT", "ovh-eu"),
        sops_file="(environment)", before_upgrade=False, timeout_seconds=3600,
    )  # fmt: skip
    credentials = OvhCredentials(*(os.environ[name] for name in NAMES[1:]))
    return VpsSnapshots(api_client(settings, credentials), settings)


def test_the_real_api_answers_for_the_vps(snapshots: VpsSnapshots) -> None:
    snapshot = snapshots.current()

    assert snapshot is None or snapshot.creation_date


def test_a_real_snapshot_is_taken_replacing_the_old(snapshots: VpsSnapshots) -> None:
    if os.environ.get("SOCLE_OVH_ALLOW_SNAPSHOT") != "1":
        pytest.skip("taking a snapshot replaces the VPS's own: set SOCLE_OVH_ALLOW_SNAPSHOT=1")

    taken = snapshots.take(default_description("socle test"), replace=lambda old: True)

    assert taken.snapshot.description.startswith("socle test ")
    assert snapshots.current() is not None
