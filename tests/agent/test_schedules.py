"""Schedule phrases and missed runs."""

from __future__ import annotations

import datetime as dt

import pytest
import schedule as schedule_lib
from socle_agent.schedules import Schedule, ScheduleError, parse_schedule


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("every 15 minutes", Schedule(unit="minute", interval=15)),
        ("every hour", Schedule(unit="hour")),
        ("hourly", Schedule(unit="hour")),
        ("every 6 hours", Schedule(unit="hour", interval=6)),
        ("every 2 seconds", Schedule(unit="second", interval=2)),
        ("daily at 02:30", Schedule(unit="day", at="02:30")),
        ("Every  day at 23:59", Schedule(unit="day", at="23:59")),
        ("weekly on sunday at 03:00", Schedule(unit="week", at="03:00", weekday="sunday")),
    ],
)
def test_parse_schedule_with_known_phrases_reads_them(phrase: str, expected: Schedule) -> None:
    assert parse_schedule(phrase) == expected


@pytest.mark.parametrize(
    "phrase",
    ["every 0 minutes", "daily at 25:00", "weekly on caturday at 03:00", "sometimes", "daily"],
)
def test_parse_schedule_with_bad_phrases_raises(phrase: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(phrase)


def test_missed_with_daily_schedule_and_success_before_todays_run_is_true() -> None:
    daily = parse_schedule("daily at 02:30")
    now = dt.datetime(2026, 11, 26, 9, 0)
    assert daily.missed(dt.datetime(2026, 11, 25, 2, 31).timestamp(), now)
    assert not daily.missed(dt.datetime(2026, 11, 26, 2, 31).timestamp(), now)


def test_missed_with_daily_schedule_before_its_time_looks_at_yesterday() -> None:
    daily = parse_schedule("daily at 02:30")
    now = dt.datetime(2026, 11, 26, 1, 0)
    assert not daily.missed(dt.datetime(2026, 11, 25, 2, 31).timestamp(), now)
    assert daily.missed(dt.datetime(2026, 11, 25, 2, 29).timestamp(), now)


def test_missed_with_weekly_schedule_finds_last_sunday() -> None:
    weekly = parse_schedule("weekly on sunday at 03:00")
    thursday = dt.datetime(2026, 11, 26, 12, 0)
    assert weekly.last_due(thursday) == dt.datetime(2026, 11, 22, 3, 0)
    assert weekly.missed(dt.datetime(2026, 11, 21, 3, 0).timestamp(), thursday)
    assert not weekly.missed(dt.datetime(2026, 11, 22, 3, 5).timestamp(), thursday)


def test_missed_with_interval_schedule_compares_with_period() -> None:
    every = parse_schedule("every 6 hours")
    now = dt.datetime(2026, 11, 26, 12, 0)
    assert every.missed((now - dt.timedelta(hours=7)).timestamp(), now)
    assert not every.missed((now - dt.timedelta(hours=5)).timestamp(), now)


def test_missed_with_no_success_ever_is_true() -> None:
    assert parse_schedule("hourly").missed(None, dt.datetime(2026, 11, 26))


def test_install_registers_a_job_on_the_scheduler() -> None:
    scheduler = schedule_lib.Scheduler()
    parse_schedule("weekly on sunday at 03:00").install(scheduler, lambda: None)
    parse_schedule("every 15 minutes").install(scheduler, lambda: None)
    parse_schedule("daily at 02:30").install(scheduler, lambda: None)
    assert len(scheduler.jobs) == 3
    assert scheduler.jobs[0].start_day == "sunday"
