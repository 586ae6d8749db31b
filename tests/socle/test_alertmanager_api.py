"""Maintenance windows and the test alert, as Alertmanager's API receives them."""

from __future__ import annotations

import datetime as dt

import pytest

from socle.alertmanager_api import (
    AlertmanagerApi,
    AlertmanagerError,
    is_maintenance,
    maintenance_silence,
    manual_test_alert,
    parse_window,
)

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_windows() -> None:
    assert parse_window("30m") == dt.timedelta(minutes=30)
    assert parse_window("1h30m") == dt.timedelta(minutes=90)
    assert parse_window("2d") == dt.timedelta(days=2)
    for bad in ("", "0m", "30", "30s", "-5m", "8d", "1h 30m"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_a_maintenance_silence_spares_the_heartbeat_and_expires() -> None:
    silence = maintenance_silence(dt.timedelta(minutes=30), " kernel upgrade ", "ops@laptop", NOW)

    assert silence["endsAt"] == (NOW + dt.timedelta(minutes=30)).isoformat()
    assert silence["comment"] == "kernel upgrade"
    assert {
        "name": "alertname",
        "value": "Watchdog",
        "isRegex": False,
        "isEqual": False,
    } in silence["matchers"]
    assert is_maintenance({**silence, "status": {"state": "active"}})
    assert not is_maintenance({**silence, "status": {"state": "expired"}})
    assert not is_maintenance({"createdBy": "someone", "status": {"state": "active"}})
    with pytest.raises(ValueError, match="reason"):
        maintenance_silence(dt.timedelta(minutes=5), "  ", "ops")


def test_the_test_alert_is_level_one_and_ends_by_itself() -> None:
    alert = manual_test_alert("ops", now=NOW)

    assert alert["labels"] == {"alertname": "SocleTestAlert", "severity": "critical"}
    assert alert["endsAt"] == (NOW + dt.timedelta(minutes=5)).isoformat()


def test_bad_urls_and_ids_are_refused_and_an_absent_alertmanager_is_named() -> None:
    with pytest.raises(ValueError):
        AlertmanagerApi("file:///etc/passwd")
    with pytest.raises(ValueError):
        AlertmanagerApi("http://127.0.0.1:1").expire_silence("../../x")
    with pytest.raises(AlertmanagerError, match="cannot reach Alertmanager at http://127.0.0.1:1"):
        AlertmanagerApi("http://127.0.0.1:1").silences()
