"""How `socle offsite prune` reads the snapshots the node wrote (hostile input)."""

from __future__ import annotations

from datetime import UTC, datetime

from socle_cli.offsite_prune import Group, future_snapshots, group_snapshots


def snapshot(short_id: str, *tags: str, time: str = "2025-01-31T02:00:00.123456789Z") -> dict:
    return {"short_id": short_id, "id": short_id * 8, "tags": list(tags), "time": time}


def test_snapshots_are_grouped_by_kind_and_database() -> None:
    groups, left_alone = group_snapshots([
        snapshot("a1", "kind=postgres", "database=app", "backup=1"),
        snapshot("a2", "kind=postgres", "database=app", "backup=2"),
        snapshot("k1", "kind=k3s", "backup=3"),
        snapshot("x1"),
        snapshot("x2", "kind=postgres", "database=a,b"),
        snapshot("x3", "kind=postgres", "kind=k3s"),
    ])  # fmt: skip

    assert groups == [Group("k3s", None), Group("postgres", "app")]
    assert [group.tags for group in groups] == ["kind=k3s", "kind=postgres,database=app"]
    assert left_alone == ["x1", "x2", "x3"]


def test_snapshots_dated_in_the_future_are_found() -> None:
    now = datetime(2025, 1, 31, 3, 0, tzinfo=UTC)

    found = future_snapshots([
        snapshot("ok"),
        snapshot("late", time="2025-01-31T03:30:00Z"),
        snapshot("future", time="2031-01-01T00:00:00.5+00:00"),
        snapshot("garbled", time="yesterday"),
    ], now)  # fmt: skip

    assert found == ["future", "garbled"]
