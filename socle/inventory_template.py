"""The production inventory is a template: refuse it until every placeholder is filled in.

A placeholder is a string value starting with ``PLACEHOLDER:`` followed by what to put
there, or a value that can only be an example: an address from the documentation ranges
(RFC 5737) or a name under ``example.org``/``.com``/``.net``. ``inventories/prod.py`` calls
``refuse_placeholders`` while pyinfra loads it, so a fresh clone stops with the list of
settings to fill in before any connection is attempted.

Example::

    refuse_placeholders(prod, Path(__file__).parent / "group_data" / "prod.py")
    # pyinfra error: fill in the inventory before deploying (3 placeholders):
    #   vps.ssh_hostname: the VPS's public IPv4 address
    #   ...
"""

from __future__ import annotations

import ipaddress
import re
import runpy
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import InventoryError

PLACEHOLDER = "PLACEHOLDER"
_DOCUMENTATION_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
_EXAMPLE_DOMAIN = re.compile(r"(^|[@.])example\.(org|com|net)$", re.IGNORECASE)


def _hint(value: str) -> str | None:
    if value.startswith(PLACEHOLDER):
        return value[len(PLACEHOLDER) :].lstrip(":- ").strip() or "a real value"
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is not None and any(address in n for n in _DOCUMENTATION_NETWORKS):
        return f"{value} is a documentation address: the real one"
    if _EXAMPLE_DOMAIN.search(value):
        return f"{value} is an example name: the real one"
    return None


def placeholders(value: Any, where: str) -> Iterator[str]:
    """Yield ``where.key: what to put there`` for each placeholder inside ``value``."""
    if isinstance(value, str):
        hint = _hint(value)
        if hint is not None:
            yield f"{where}: {hint}"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from placeholders(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from placeholders(item, f"{where}[{index}]")


def group_data(path: Path) -> dict[str, Any]:
    """The settings a group-data file defines (its public names)."""
    return {k: v for k, v in runpy.run_path(str(path)).items() if not k.startswith("_")}


def refuse_placeholders(
    hosts: Sequence[tuple[str, Mapping[str, Any]]], group_data_file: Path
) -> None:
    """Raise ``InventoryError`` listing every placeholder of the hosts and their group data."""
    found = [line for name, data in hosts for line in placeholders(data, name)]
    data = {k: v for k, v in group_data(group_data_file).items() if not callable(v)}
    found += [f"group_data/{group_data_file.name}: {line}" for line in placeholders(data, "")]
    if found:
        listing = "".join(f"\n  {line}" for line in found)
        raise InventoryError(
            f"fill in the inventory before deploying ({len(found)} placeholders):{listing}"
        )
