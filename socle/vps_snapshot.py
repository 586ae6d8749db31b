"""The provider's snapshot of the VPS, through the OVH API with the official ``ovh`` client.

OVH keeps one snapshot per VPS: a new one can be taken only once the old one is deleted.
So taking a snapshot over an existing one deletes it first, and says so before it does:
until the new one is done the VPS has none. Each step is a task at OVH that this module
waits for, with progress lines and a deadline. The API credentials come from SOPS on the
operator's machine and are never sent to the node.

The inventory key ``ovh_vps`` of the VPS's host::

    ovh_vps = {
        "service_name": "vps-1a2b3c4d.vps.ovh.net",  # the VPS's name in the OVH manager
        "endpoint": "ovh-eu",                         # the API region (ovh-eu, ovh-ca, ...)
        "sops_file": "secrets/prod.sops.yaml",        # holds the three API keys below
        "snapshot_before_upgrade": True,              # phase 3 takes one before an upgrade
        "timeout_seconds": 3600,                      # how long to wait for each task
    }

The SOPS file holds ``ovh_application_key``, ``ovh_application_secret`` and
``ovh_consumer_key`` (a consumer key limited to ``GET/POST/DELETE /vps/<service>/*``).

Example::

    settings = vps_snapshot_settings(host_data)
    snapshots = VpsSnapshots(api_client(settings, read_credentials(settings)), settings)
    taken = snapshots.take("before k3s v1.34", replace=lambda old: True)
    print(taken.seconds)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ovh
from ovh import exceptions as ovh_errors

from socle.inventory_checks import InventoryDataError
from socle.sops_secrets import SopsError, decrypt_value

INVENTORY_KEY = "ovh_vps"
CREDENTIAL_KEYS = ("ovh_application_key", "ovh_application_secret", "ovh_consumer_key")
DEFAULT_ENDPOINT = "ovh-eu"
DEFAULT_TIMEOUT_S = 3600
POLL_SECONDS = 10.0
# Each API call gives up after this (connect, read): a call never hangs the command.
REQUEST_TIMEOUT_S = (10, 60)
# A service name goes into the API's paths: letters, digits, dots and dashes only.
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$")
_FAILED_STATES = ("error", "cancelled")


class VpsSnapshotError(RuntimeError):
    """The snapshot could not be taken or reverted; the message says why and what to do."""


class SnapshotDeclined(VpsSnapshotError):
    """The operator declined to replace or revert: nothing was changed."""


@dataclass(frozen=True)
class VpsSnapshotSettings:
    """The checked ``ovh_vps`` inventory table."""

    service_name: str
    endpoint: str
    sops_file: str
    before_upgrade: bool
    timeout_seconds: int


@dataclass(frozen=True)
class OvhCredentials:
    """The API keys; never printed (``repr`` hides them)."""

    application_key: str = field(repr=False)
    application_secret: str = field(repr=False)
    consumer_key: str = field(repr=False)


@dataclass(frozen=True)
class Snapshot:
    """The VPS's snapshot as the API describes it."""

    description: str
    creation_date: str
    snapshot_id: str | None = None

    def describe(self) -> str:
        """``from 2025-01-31T02:00:00+00:00 ("before k3s v1.34")``."""
        return f"from {self.creation_date} ({self.description!r})"


@dataclass(frozen=True)
class TakenSnapshot:
    """A snapshot just taken: what it is, how long it took, and what it replaced."""

    snapshot: Snapshot
    seconds: float
    replaced: Snapshot | None


def vps_snapshot_settings(data: Mapping[str, Any]) -> VpsSnapshotSettings | None:
    """Return the checked ``ovh_vps`` table of a host's data, or None when it is absent.

    Raises ``InventoryDataError`` naming the key at fault.

    >>> vps_snapshot_settings({"ovh_vps": {"service_name": "vps-1.vps.ovh.net",
    ...                                    "sops_file": "secrets/prod.sops.yaml"}})
    ... # doctest: +NORMALIZE_WHITESPACE
    VpsSnapshotSettings(service_name='vps-1.vps.ovh.net', endpoint='ovh-eu',
        sops_file='secrets/prod.sops.yaml', before_upgrade=False, timeout_seconds=3600)
    """
    table = data.get(INVENTORY_KEY)
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise InventoryDataError(INVENTORY_KEY, f"expected a table, got {table!r}")
    known = {"service_name", "endpoint", "sops_file", "snapshot_before_upgrade", "timeout_seconds"}
    for key in sorted(set(table) - known):
        raise InventoryDataError(f"{INVENTORY_KEY}.{key}", f"unknown key (known: {sorted(known)})")
    service = table.get("service_name")
    if not isinstance(service, str) or not _SERVICE_NAME.match(service):
        raise InventoryDataError(
            f"{INVENTORY_KEY}.service_name",
            f"{service!r} is not a VPS service name (e.g. vps-1a2b3c4d.vps.ovh.net)",
        )
    endpoint = table.get("endpoint", DEFAULT_ENDPOINT)
    if endpoint not in ovh.client.ENDPOINTS:
        raise InventoryDataError(
            f"{INVENTORY_KEY}.endpoint",
            f"{endpoint!r} is not an OVH API region (one of {sorted(ovh.client.ENDPOINTS)})",
        )
    sops_file = table.get("sops_file")
    if not isinstance(sops_file, str) or not sops_file:
        raise InventoryDataError(
            f"{INVENTORY_KEY}.sops_file",
            f"required: the SOPS file holding {', '.join(CREDENTIAL_KEYS)}",
        )
    before_upgrade = table.get("snapshot_before_upgrade", False)
    if not isinstance(before_upgrade, bool):
        raise InventoryDataError(
            f"{INVENTORY_KEY}.snapshot_before_upgrade",
            f"expected True or False, got {before_upgrade!r}",
        )
    timeout = table.get("timeout_seconds", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 60 <= timeout <= 86400:
        raise InventoryDataError(
            f"{INVENTORY_KEY}.timeout_seconds", f"{timeout!r} is not a number of seconds (60-86400)"
        )
    return VpsSnapshotSettings(service, endpoint, sops_file, before_upgrade, timeout)


def read_credentials(settings: VpsSnapshotSettings) -> OvhCredentials:
    """Decrypt the three API keys from the SOPS file (on the operator's machine)."""
    try:
        values = [decrypt_value(settings.sops_file, key) for key in CREDENTIAL_KEYS]
    except SopsError as error:
        raise VpsSnapshotError(f"the OVH API keys: {error}") from None
    for key, value in zip(CREDENTIAL_KEYS, values, strict=True):
        if not value:
            raise VpsSnapshotError(f"{key} is empty in {settings.sops_file}")
    return OvhCredentials(*values)


def api_client(settings: VpsSnapshotSettings, credentials: OvhCredentials) -> ovh.Client:
    """Return the official client for the settings' region, every call bounded in time."""
    return ovh.Client(
        endpoint=settings.endpoint,
        application_key=credentials.application_key,
        application_secret=credentials.application_secret,
        consumer_key=credentials.consumer_key,
        timeout=REQUEST_TIMEOUT_S,
    )


def _explain(error: ovh_errors.APIError, doing: str) -> VpsSnapshotError:
    hint = ""
    if isinstance(error, ovh_errors.InvalidKey | ovh_errors.InvalidCredential):
        hint = ": the API keys in the SOPS file are wrong or expired (make a new consumer key)"
    elif isinstance(error, ovh_errors.NotGrantedCall | ovh_errors.Forbidden):
        hint = ": the consumer key is not allowed this call (grant it /vps/<service>/*)"
    elif isinstance(error, ovh_errors.HTTPError):
        hint = ": the API did not answer (network)"
    return VpsSnapshotError(f"OVH API, {doing}: {error}{hint}")


class VpsSnapshots:
    """The snapshot of one VPS: read it, take one (replacing the old), revert to it."""

    def __init__(
        self,
        client: ovh.Client,
        settings: VpsSnapshotSettings,
        *,
        echo: Callable[[str], None] = print,
        poll_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.service = settings.service_name
        self.timeout = settings.timeout_seconds
        self.echo = echo
        self.poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
        self.clock = clock
        self.sleep = sleep

    def _call(self, method: str, path: str, doing: str, **body: Any) -> Any:
        try:
            return self.client.call(method, f"/vps/{self.service}{path}", body or None)
        except ovh_errors.ResourceNotFoundError:
            raise
        except ovh_errors.APIError as error:
            raise _explain(error, doing) from None

    def current(self) -> Snapshot | None:
        """Return the VPS's snapshot, or None when it has none."""
        try:
            found = self._call("GET", "/snapshot", "reading the snapshot")
        except ovh_errors.ResourceNotFoundError:
            return None
        if not isinstance(found, Mapping):
            raise VpsSnapshotError(f"OVH API, reading the snapshot: unexpected answer {found!r}")
        return Snapshot(
            description=str(found.get("description", "")),
            creation_date=str(found.get("creationDate", "?")),
            snapshot_id=found.get("id"),
        )

    def take(self, description: str, *, replace: Callable[[Snapshot], bool]) -> TakenSnapshot:
        """Take a new snapshot, waiting until it is done.

        When one exists, ``replace(old)`` decides: False raises ``SnapshotDeclined`` with
        nothing changed; True deletes it first (OVH keeps one per VPS).
        """
        started = self.clock()
        old = self.current()
        if old is not None:
            if not replace(old):
                raise SnapshotDeclined(f"kept the snapshot {old.describe()}; nothing changed")
            self.echo(f"deleting the snapshot {old.describe()} of {self.service}")
            task = self._task("DELETE", "/snapshot", "deleting the old snapshot")
            self._wait(task, "deleteSnapshot", finished=lambda: self.current() is None)
        self.echo(f"taking a snapshot of {self.service} ({description!r})")
        task = self._task(
            "POST", "/createSnapshot", "creating the snapshot", description=description
        )
        self._wait(task, "createSnapshot", finished=lambda: self.current() is not None)
        snapshot = self.current()
        if snapshot is None:
            raise VpsSnapshotError(
                f"the createSnapshot task of {self.service} finished but the API shows no snapshot"
            )
        return TakenSnapshot(snapshot, self.clock() - started, old)

    def revert(self, *, confirm: Callable[[Snapshot], bool]) -> tuple[Snapshot, float]:
        """Put the VPS back to its snapshot after ``confirm(snapshot)``; return it and the time."""
        started = self.clock()
        snapshot = self.current()
        if snapshot is None:
            raise VpsSnapshotError(f"{self.service} has no snapshot to revert to")
        if not confirm(snapshot):
            raise SnapshotDeclined("not reverted; nothing changed")
        self.echo(f"reverting {self.service} to its snapshot {snapshot.describe()}")
        task = self._task("POST", "/snapshot/revert", "reverting to the snapshot")
        # Nothing tells a finished revert apart once its task is gone: trust its absence.
        self._wait(task, "revertSnapshot", finished=lambda: True)
        return snapshot, self.clock() - started

    def _task(self, method: str, path: str, doing: str, **body: Any) -> Mapping[str, Any]:
        try:
            task = self._call(method, path, doing, **body)
        except ovh_errors.ResourceNotFoundError as error:
            raise _explain(error, doing) from None
        if not isinstance(task, Mapping) or not isinstance(task.get("id"), int):
            raise VpsSnapshotError(f"OVH API, {doing}: expected a task, got {task!r}")
        return task

    def _wait(self, task: Mapping[str, Any], what: str, *, finished: Callable[[], bool]) -> None:
        """Poll the task until done; the API drops finished tasks, so a task that is gone
        is done when ``finished()`` confirms it."""
        task_id = task["id"]
        started = self.clock()
        deadline = started + self.timeout
        last = ("", -1)
        while True:
            try:
                task = self._call("GET", f"/tasks/{task_id}", f"following task {task_id}")
            except ovh_errors.ResourceNotFoundError:
                if finished():
                    self.echo(f"{what}: done in {self.clock() - started:.0f} s")
                    return
                raise VpsSnapshotError(
                    f"task {task_id} ({what}) of {self.service} is gone but did not finish; "
                    "see the OVH manager"
                ) from None
            state, progress = str(task.get("state")), int(task.get("progress") or 0)
            if state == "done":
                self.echo(f"{what}: done in {self.clock() - started:.0f} s")
                return
            if state in _FAILED_STATES:
                raise VpsSnapshotError(
                    f"task {task_id} ({what}) of {self.service} ended in state {state!r}; "
                    "see the OVH manager, or open a ticket with this task id"
                )
            if (state, progress) != last:
                self.echo(f"{what}: {state} {progress}% ({self.clock() - started:.0f} s)")
                last = (state, progress)
            if self.clock() >= deadline:
                raise VpsSnapshotError(
                    f"task {task_id} ({what}) of {self.service} is still {state} at {progress}% "
                    f"after {self.timeout} s (ovh_vps.timeout_seconds); it goes on at OVH: "
                    "see the OVH manager before trying again"
                )
            self.sleep(self.poll_seconds)


def default_description(reason: str = "socle snapshot-vps") -> str:
    """``socle snapshot-vps 2025-01-31T02:00:00Z``: what took it, and when (UTC)."""
    return f"{reason} {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def snapshot_before_upgrade(
    data: Mapping[str, Any], reason: str, echo: Callable[[str], None] = print
) -> TakenSnapshot | None:
    """Take the VPS's snapshot before an upgrade, when ``ovh_vps.snapshot_before_upgrade``
    is on; return None when the inventory does not ask for one.

    The snapshot the VPS already has is replaced (OVH keeps one), and the output says so.
    Raises ``VpsSnapshotError`` when it fails: the upgrade must not go on without it.

    >>> snapshot_before_upgrade(host.data.dict(), "before k3s v1.34.1+k3s1")  # doctest: +SKIP
    """
    settings = vps_snapshot_settings(data)
    if settings is None or not settings.before_upgrade:
        return None

    def replace(old: Snapshot) -> bool:
        echo(f"replacing the VPS's snapshot {old.describe()}: OVH keeps one per VPS")
        return True

    snapshots = VpsSnapshots(api_client(settings, read_credentials(settings)), settings, echo=echo)
    taken = snapshots.take(default_description(reason), replace=replace)
    echo(f"snapshot of {settings.service_name} taken in {taken.seconds:.0f} s")
    return taken
