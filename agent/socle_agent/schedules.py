"""Parse the schedule expressions of the configuration and find missed runs.

A schedule is written as a short phrase, read by `parse_schedule`:

    every 15 minutes
    every 6 hours
    hourly
    daily at 02:30
    weekly on sunday at 03:00

Times are the node's local time, as `schedule` uses them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import schedule as schedule_lib

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_EVERY = re.compile(r"^every\s+(?:(\d+)\s+)?(second|minute|hour|day|week)s?$")
_DAILY = re.compile(r"^(?:daily|every\s+day)\s+at\s+(\d{2}:\d{2})$")
_WEEKLY = re.compile(r"^weekly\s+on\s+([a-z]+)\s+at\s+(\d{2}:\d{2})$")


class ScheduleError(ValueError):
    """A schedule phrase that cannot be understood."""


@dataclass(frozen=True)
class Schedule:
    """When a job runs: every `interval` `unit`s, or daily/weekly at a time of day.

    Example: `parse_schedule("daily at 02:30")` gives
    `Schedule(unit="day", interval=1, at="02:30", weekday=None)`.
    """

    unit: str
    interval: int = 1
    at: str | None = None
    weekday: str | None = None

    @property
    def period_seconds(self) -> int:
        """The time between two runs, in seconds."""
        return _UNITS[self.unit] * self.interval

    def install(self, scheduler: schedule_lib.Scheduler, func: Callable[[], object]) -> None:
        """Register `func` on `scheduler` at this schedule."""
        if self.weekday is not None:
            job = getattr(scheduler.every(), self.weekday)
            job.at(self.at).do(func)
            return
        job = scheduler.every(self.interval)
        job = getattr(job, self.unit + "s")
        if self.at is not None:
            job = job.at(self.at)
        job.do(func)

    def last_due(self, now: dt.datetime) -> dt.datetime | None:
        """The latest time at or before `now` when a run was due, for timed schedules.

        Interval schedules have no fixed due time and give None: for them a run is
        missed when a whole period has passed since the last one.
        """
        if self.at is None:
            return None
        hour, minute = (int(part) for part in self.at.split(":"))
        due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if self.weekday is not None:
            due -= dt.timedelta(days=(now.weekday() - WEEKDAYS.index(self.weekday)) % 7)
            if due > now:
                due -= dt.timedelta(days=7)
        elif due > now:
            due -= dt.timedelta(days=1)
        return due

    def missed(self, last_success: float | None, now: dt.datetime) -> bool:
        """Whether a run was due since `last_success` (a Unix time; None if never run).

        Example: with "daily at 02:30", a last success yesterday at 02:31 and now
        today at 09:00, the run of 02:30 today was missed.
        """
        if last_success is None:
            return True
        due = self.last_due(now)
        if due is None:
            return now.timestamp() - last_success >= self.period_seconds
        return last_success < due.timestamp()


def parse_schedule(text: str) -> Schedule:
    """Read a schedule phrase such as "every 15 minutes" or "daily at 02:30"."""
    phrase = " ".join(text.lower().split())
    if phrase == "hourly":
        return Schedule(unit="hour")
    if match := _EVERY.match(phrase):
        interval = int(match.group(1) or 1)
        if interval < 1:
            raise ScheduleError(f"interval must be at least 1 in {text!r}")
        return Schedule(unit=match.group(2), interval=interval)
    if match := _DAILY.match(phrase):
        return Schedule(unit="day", at=_time_of_day(match.group(1), text))
    if match := _WEEKLY.match(phrase):
        day = match.group(1)
        if day not in WEEKDAYS:
            raise ScheduleError(f"unknown day {day!r} in {text!r}")
        return Schedule(unit="week", at=_time_of_day(match.group(2), text), weekday=day)
    raise ScheduleError(
        f"cannot read {text!r}; write e.g. 'every 15 minutes', 'hourly', "
        "'daily at 02:30' or 'weekly on sunday at 03:00'"
    )


def _time_of_day(value: str, text: str) -> str:
    hour, minute = (int(part) for part in value.split(":"))
    if hour > 23 or minute > 59:
        raise ScheduleError(f"no such time of day {value!r} in {text!r}")
    return value
