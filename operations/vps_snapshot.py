"""The provider's snapshot of the VPS, taken by a deploy before it changes something big."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from pyinfra import host
from pyinfra.api import FunctionCommand, OperationValueError, operation

from socle.inventory_checks import InventoryDataError
from socle.vps_snapshot import INVENTORY_KEY, snapshot_before_upgrade, vps_snapshot_settings


def take_vps_snapshot(ovh_vps: Mapping[str, Any], reason: str) -> None:
    """Take the snapshot now, on the operator's machine (run by pyinfra, never in --dry)."""
    snapshot_before_upgrade({INVENTORY_KEY: ovh_vps}, reason, echo=_echo)


def _echo(line: str) -> None:
    print(f"    [{host.name}] {line}", flush=True)


@operation(is_idempotent=False)
def before_upgrade(
    ovh_vps: Mapping[str, Any] | None, reason: str
) -> Generator[FunctionCommand, None, None]:
    """
    Take the provider's snapshot of the VPS first, when the inventory enables it.

    + ovh_vps: the host's ``ovh_vps`` inventory table (``socle.vps_snapshot``), or None
    + reason: what is about to change; it goes in the snapshot's description

    With ``ovh_vps.snapshot_before_upgrade`` on, the snapshot is taken through the OVH API
    from the operator's machine when the operation runs (not with ``--dry``), replacing
    the VPS's previous one (OVH keeps one per VPS; the output says so). The operation
    waits for it and fails if it fails, so the operations after it do not run. The API
    keys are read from SOPS on the operator's machine; nothing reaches the node.

    **Example:**

    .. code:: python

        vps_snapshot.before_upgrade(
            name="VPS snapshot before the k3s upgrade",
            ovh_vps=host.data.get("ovh_vps"),
            reason=f"before k3s {versions.k3s.version}",
        )
    """
    try:
        settings = vps_snapshot_settings({INVENTORY_KEY: ovh_vps} if ovh_vps else {})
    except InventoryDataError as error:
        raise OperationValueError(str(error)) from None
    if settings is None or not settings.before_upgrade:
        host.noop("no VPS snapshot asked for before upgrades (ovh_vps.snapshot_before_upgrade)")
        return
    yield FunctionCommand(take_vps_snapshot, (dict(ovh_vps or {}), reason), {})
