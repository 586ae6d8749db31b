"""Tell systemd about readiness, liveness and stopping (sd_notify over $NOTIFY_SOCKET).

Without $NOTIFY_SOCKET (not run by systemd) every call is a no-op, so the daemon runs
the same by hand.

Example:

    notify("READY=1")
    interval = watchdog_interval()   # seconds between pings, or None
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send one notification such as "READY=1"; returns whether a socket was there."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        # An abstract socket: its name begins with a NUL byte.
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode("utf-8"))
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WatchdogSec, or None if not asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2
