"""UFW rules as values: what the firewall plan produces and the ufw operation applies.

Pure data with no pyinfra in it, so the plan (``socle.firewall_plan``) and the operation
(``operations.ufw``) share it without importing each other.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_ACTIONS = ("allow", "deny", "reject", "limit")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.=+-]{1,15}$")


@dataclass(frozen=True)
class UfwRule:
    """One UFW rule, written out by ``command()`` exactly as ``ufw show added`` prints it.

    + port: destination port (``None`` for any port)
    + proto: ``tcp``, ``udp`` or ``None`` for any protocol
    + interface: incoming interface (``in on <interface>``), ``None`` for any
    + to: destination network or address, ``None`` for any
    + source: source network (``from``), ``None`` for any
    + route: a forwarding rule (``ufw route ...``) instead of one for this host
    + action: ``allow``, ``deny``, ``reject`` or ``limit``
    """

    port: int | None = None
    proto: str | None = None
    interface: str | None = None
    to: str | None = None
    route: bool = False
    source: str | None = None
    action: str = "allow"

    def command(self) -> str:
        """Return the rule in UFW's canonical form, e.g. ``allow 22/tcp``.

        Raises ``ValueError`` for a rule UFW would not accept.
        """
        self._validate()
        prefix = "route " if self.route else ""
        plain = self.interface is None and self.to is None and self.source is None
        if plain and self.port is not None:
            short = f"{self.action} {self.port}"
            if self.proto is not None:
                short += f"/{self.proto}"
            return prefix + short
        words = [self.action]
        if self.interface is not None:
            words += ["in", "on", self.interface]
        if self.source is not None:
            words += ["from", self.source]
        if self.to is not None or self.port is not None:
            words += ["to", self.to or "any"]
            if self.port is not None:
                words += ["port", str(self.port)]
        if plain and self.port is None:
            words += ["to", "any"]
        if self.proto is not None:
            words += ["proto", self.proto]
        return prefix + " ".join(words)

    def _validate(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"invalid UFW action: {self.action!r}")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"invalid port: {self.port!r}")
        if self.proto not in (None, "tcp", "udp"):
            raise ValueError(f"invalid protocol: {self.proto!r}")
        if self.interface is not None and not _INTERFACE.match(self.interface):
            raise ValueError(f"invalid interface name: {self.interface!r}")
        for address in (self.to, self.source):
            if address is None:
                continue
            network = ipaddress.ip_network(address, strict=True)
            # UFW writes a single address without its /32
            single = network.prefixlen == network.max_prefixlen and address == str(
                network.network_address
            )
            if str(network) != address and not single:
                raise ValueError(f"network not in canonical form: {address!r}")
