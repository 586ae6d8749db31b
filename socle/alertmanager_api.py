"""Alertmanager's HTTP API (v2), as the operator's commands use it over the VPN.

Maintenance windows (the design's risk R5) are silences made by ``socle maintenance``:
they match every alert but Watchdog (the heartbeat must go on, or the external dead
man's switch would raise the alarm), carry ``createdBy`` = ``socle maintenance`` and
expire by themselves; ``socle maintenance end`` expires them early. A test alert checks
that level-1 mail arrives.

Example::

    api = AlertmanagerApi("http://10.8.0.1:9093")
    silence_id = api.create_silence(maintenance_silence(minutes(30), "kernel upgrade", "ops"))
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

CREATED_BY = "socle maintenance"
TEST_ALERT = "SocleTestAlert"
MAX_WINDOW = dt.timedelta(days=7)
TIMEOUT_SECONDS = 10
_WINDOW = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


class AlertmanagerError(RuntimeError):
    """Alertmanager could not be reached or refused the request; the message says why."""


def parse_window(text: str) -> dt.timedelta:
    """A maintenance window such as ``30m``, ``2h`` or ``1h30m`` (at most 7 days).

    >>> parse_window("1h30m")
    datetime.timedelta(seconds=5400)
    """
    match = _WINDOW.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration such as 30m, 2h or 1h30m")
    days, hours, mins = (int(g) if g else 0 for g in match.groups())
    window = dt.timedelta(days=days, hours=hours, minutes=mins)
    if window <= dt.timedelta(0):
        raise ValueError(f"{text!r} is no time at all")
    if window > MAX_WINDOW:
        raise ValueError(
            f"{text!r} is longer than {MAX_WINDOW.days} days: end it and start another"
        )
    return window


def maintenance_silence(
    window: dt.timedelta, reason: str, author: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The silence of a maintenance window: every alert but Watchdog, from now on."""
    if not reason.strip():
        raise ValueError("a maintenance window needs a reason (--reason)")
    start = now or dt.datetime.now(dt.UTC)
    return {
        "matchers": [
            # Alertmanager wants one matcher that cannot match the empty string.
            {"name": "alertname", "value": ".+", "isRegex": True, "isEqual": True},
            {"name": "alertname", "value": "Watchdog", "isRegex": False, "isEqual": False},
        ],
        "startsAt": start.isoformat(),
        "endsAt": (start + window).isoformat(),
        "createdBy": f"{CREATED_BY} ({author})",
        "comment": reason.strip(),
    }


def manual_test_alert(
    author: str, lasting: dt.timedelta = dt.timedelta(minutes=5), now: dt.datetime | None = None
) -> dict[str, Any]:
    """A level-1 alert that resolves by itself after ``lasting``."""
    start = now or dt.datetime.now(dt.UTC)
    return {
        "labels": {"alertname": TEST_ALERT, "severity": "critical"},
        "annotations": {
            "summary": "test alert from socle",
            "description": (
                f"Sent by `socle alert test` ({author}) to check that level-1 mail arrives."
            ),
        },
        "startsAt": start.isoformat(),
        "endsAt": (start + lasting).isoformat(),
    }


def is_maintenance(silence: Mapping[str, Any]) -> bool:
    """Whether a silence is an active maintenance window made by socle."""
    return str(silence.get("createdBy", "")).startswith(CREATED_BY) and silence.get(
        "status", {}
    ).get("state") in ("active", "pending")


class AlertmanagerApi:
    """A small client of Alertmanager's v2 API at ``url`` (http or https)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL of Alertmanager")
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/api/v2/{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace").strip()
            raise AlertmanagerError(
                f"Alertmanager at {self.url} refused {method} {path}: {error.code} {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise AlertmanagerError(
                f"cannot reach Alertmanager at {self.url} ({reason}); is the VPN up?"
            ) from None
        return json.loads(text) if text.strip() else None

    def create_silence(self, silence: Mapping[str, Any]) -> str:
        """Create a silence; return its id."""
        return str(self._call("POST", "silences", silence)["silenceID"])

    def silences(self) -> list[dict[str, Any]]:
        """Every silence Alertmanager knows (expired ones included)."""
        return list(self._call("GET", "silences") or [])

    def expire_silence(self, silence_id: str) -> None:
        """End a silence now."""
        if not re.fullmatch(r"[0-9a-fA-F-]{1,64}", silence_id):
            raise ValueError(f"{silence_id!r} is not a silence id")
        self._call("DELETE", f"silence/{silence_id}")

    def post_alerts(self, alerts: list[Mapping[str, Any]]) -> None:
        """Send alerts as Prometheus would."""
        self._call("POST", "alerts", alerts)
