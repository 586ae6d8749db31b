"""The retention policy."""

from __future__ import annotations

import datetime as dt

from socle_agent.config import RetentionPolicy
from socle_agent.retention import Item, plan_retention

DAY = 86400.0
START = dt.datetime(2026, 1, 1, 2, 0, tzinfo=dt.UTC).timestamp()


def daily_items(days: int, group: str = "postgres/app", size: int = 100) -> list[Item]:
    return [Item(f"{group}-{n:03d}", group, START + n * DAY, size) for n in range(days)]


def policy(**kwargs: int | None) -> RetentionPolicy:
    values: dict[str, int | None] = dict(keep_last=0, keep_daily=0, keep_weekly=0,
                                         keep_monthly=0)
    values.update(kwargs)
    return RetentionPolicy(**values)  # type: ignore[arg-type]


def test_plan_with_keep_last_keeps_the_newest_ones() -> None:
    plan = plan_retention(daily_items(5), policy(keep_last=2))
    assert [i.id for i in plan.keep] == ["postgres/app-003", "postgres/app-004"]
    assert len(plan.delete) == 3


def test_plan_with_keep_daily_keeps_newest_of_each_day() -> None:
    items = daily_items(3) + [Item("late", "postgres/app", START + 2 * DAY + 3600, 100)]
    plan = plan_retention(items, policy(keep_daily=2))
    assert {i.id for i in plan.keep} == {"late", "postgres/app-001"}


def test_plan_with_weekly_and_monthly_keeps_one_per_period() -> None:
    plan = plan_retention(daily_items(90), policy(keep_weekly=3, keep_monthly=3))
    kept = [dt.datetime.fromtimestamp(i.finished, dt.UTC).date() for i in plan.keep]
    # Newest of each of the last three ISO weeks, and of January, February and March.
    assert dt.date(2026, 1, 31) in kept and dt.date(2026, 2, 28) in kept
    assert dt.date(2026, 3, 31) in kept
    assert len(plan.keep) == 5


def test_plan_with_zero_counts_never_deletes_the_newest() -> None:
    plan = plan_retention(daily_items(4), policy())
    assert [i.id for i in plan.keep] == ["postgres/app-003"]


def test_plan_never_deletes_the_newest_verified_backup() -> None:
    items = daily_items(4)
    items[1] = Item(items[1].id, items[1].group, items[1].finished, 100, verified=True)
    plan = plan_retention(items, policy(keep_last=1))
    assert [i.id for i in plan.keep] == ["postgres/app-001", "postgres/app-003"]


def test_plan_keeps_groups_apart() -> None:
    items = daily_items(3) + daily_items(3, group="postgres/other")
    plan = plan_retention(items, policy(keep_last=1))
    assert {i.id for i in plan.keep} == {"postgres/app-002", "postgres/other-002"}


def test_plan_with_byte_budget_drops_oldest_but_protected_stays() -> None:
    items = daily_items(5, size=100)
    plan = plan_retention(items, policy(keep_last=5, max_total_bytes=250))
    assert [i.id for i in plan.keep] == ["postgres/app-003", "postgres/app-004"]
    tiny = plan_retention(items, policy(keep_last=5, max_total_bytes=1))
    assert [i.id for i in tiny.keep] == ["postgres/app-004"]
