"""Retention policy: which backups to keep. Pure: no files, no clock of its own.

Backups are kept per group (a kind and subject, e.g. postgres/app): the `keep_last`
newest, the newest of each of the `keep_daily` most recent days that have one, likewise
per ISO week and per month. Whatever else, the newest backup of each group and the
newest verified one (passed a drill) are kept. Then, if a byte budget is set, the oldest
kept backups that are not protected are dropped until the total fits.

Example:

    plan = plan_retention(items, RetentionPolicy(keep_last=2, keep_daily=0,
                                                 keep_weekly=0, keep_monthly=0))
    plan.delete   # every item but the two newest of each group
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from socle_agent.config import RetentionPolicy


@dataclass(frozen=True)
class Item:
    """What retention needs to know of one backup."""

    id: str
    group: str
    finished: float
    size: int
    verified: bool = False


@dataclass
class Plan:
    """The verdict: items to keep (with the reasons) and items to delete, oldest first."""

    keep: list[Item] = field(default_factory=list)
    delete: list[Item] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)


def _day(item: Item) -> tuple[int, ...]:
    date = dt.datetime.fromtimestamp(item.finished, dt.UTC).date()
    return (date.year, date.month, date.day)


def _week(item: Item) -> tuple[int, ...]:
    iso = dt.datetime.fromtimestamp(item.finished, dt.UTC).isocalendar()
    return (iso.year, iso.week)


def _month(item: Item) -> tuple[int, ...]:
    date = dt.datetime.fromtimestamp(item.finished, dt.UTC)
    return (date.year, date.month)


def _newest_per_period(
    newest_first: list[Item], count: int, period: Callable[[Item], tuple[int, ...]]
) -> list[Item]:
    chosen: list[Item] = []
    seen: set[tuple[int, ...]] = set()
    for item in newest_first:
        if len(chosen) >= count:
            break
        key = period(item)
        if key not in seen:
            seen.add(key)
            chosen.append(item)
    return chosen


def plan_retention(items: Iterable[Item], policy: RetentionPolicy) -> Plan:
    """Decide which of `items` to keep under `policy` (see the module docstring)."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    reasons: dict[str, list[str]] = {}
    protected: set[str] = set()

    def keep(chosen: Iterable[Item], reason: str) -> None:
        for item in chosen:
            reasons.setdefault(item.id, []).append(reason)

    for members in groups.values():
        newest_first = sorted(members, key=lambda i: (i.finished, i.id), reverse=True)
        keep(newest_first[: policy.keep_last], "last")
        keep(_newest_per_period(newest_first, policy.keep_daily, _day), "daily")
        keep(_newest_per_period(newest_first, policy.keep_weekly, _week), "weekly")
        keep(_newest_per_period(newest_first, policy.keep_monthly, _month), "monthly")
        guarded = newest_first[:1] + [i for i in newest_first if i.verified][:1]
        keep(guarded, "newest")
        protected.update(item.id for item in guarded)

    everything = sorted(
        (item for members in groups.values() for item in members),
        key=lambda i: (i.finished, i.id),
    )
    kept = [item for item in everything if item.id in reasons]
    if policy.max_total_bytes is not None:
        total = sum(item.size for item in kept)
        for item in list(kept):
            if total <= policy.max_total_bytes:
                break
            if item.id not in protected:
                kept.remove(item)
                total -= item.size
                reasons.pop(item.id)
    kept_ids = {item.id for item in kept}
    return Plan(
        keep=kept,
        delete=[item for item in everything if item.id not in kept_ids],
        reasons={item.id: reasons[item.id] for item in kept},
    )
