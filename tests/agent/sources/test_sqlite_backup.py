"""Copies of a live SQLite database through the online backup API."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from socle_agent.sources.sqlite_backup import (
    ONE_STEP,
    STEPPED,
    BackupCancelled,
    BackupOptions,
    backup_database,
    integrity_problems,
)

from tests.standins.k3s_datastore import connect, create_datastore

ROWS = 3000


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return create_datastore(tmp_path / "live" / "state.db", rows=ROWS)


def rows_of(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM kine ORDER BY id").fetchall()
    finally:
        conn.close()


def writing_clock(db: Path, write_at_call: int) -> tuple[list[int], object]:
    """A clock that, once, commits a row through another connection between two steps.

    The backup asks the clock after every step, so this puts a write from another
    connection exactly between steps, which is what makes SQLite restart a copy.
    """
    calls = [0]

    def clock() -> float:
        calls[0] += 1
        if calls[0] == write_at_call:
            conn = connect(db)
            conn.execute(
                "INSERT INTO kine (name, created, deleted, create_revision, prev_revision,"
                " lease, value, old_value) VALUES ('/registry/mid-copy', 1, 0, 0, 0, 0, 'x', NULL)"
            )
            conn.close()
        return 0.0

    return calls, clock


def test_backup_database_stepped_copies_every_row_into_one_file(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"

    outcome = backup_database(db, target, BackupOptions(pages_per_step=16))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "live"]
    assert outcome.method == STEPPED and outcome.fallback_reason is None
    assert outcome.steps > 1
    assert rows_of(target) == rows_of(db)
    assert integrity_problems(target) == []


def test_backup_database_with_a_pinned_snapshot_is_not_restarted_by_another_writer(
    db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "copy.db"
    _, clock = writing_clock(db, write_at_call=3)
    options = BackupOptions(pages_per_step=16, step_pause_seconds=0, max_restarts=0)

    outcome = backup_database(db, target, options, clock=clock)  # type: ignore[arg-type]

    assert outcome.method == STEPPED and outcome.restarts == 0
    # the copy is the database as it was when the copy began
    assert len(rows_of(target)) == ROWS + 1
    assert len(rows_of(db)) == ROWS + 2


def test_backup_database_restarted_past_its_limit_falls_back_to_one_step(
    db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "copy.db"
    _, clock = writing_clock(db, write_at_call=3)
    options = BackupOptions(
        pages_per_step=16, step_pause_seconds=0, max_restarts=0, pin_read_snapshot=False
    )

    outcome = backup_database(db, target, options, clock=clock)  # type: ignore[arg-type]

    assert outcome.method == ONE_STEP
    assert outcome.restarts == 1
    assert outcome.fallback_reason is not None and "restarted 1 times" in outcome.fallback_reason
    assert rows_of(target) == rows_of(db)
    assert integrity_problems(target) == []


def test_backup_database_refuses_an_existing_target(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    target.write_bytes(b"keep me")

    with pytest.raises(FileExistsError):
        backup_database(db, target)

    assert target.read_bytes() == b"keep me"


def test_backup_database_of_a_file_that_is_not_a_database_fails_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    source = tmp_path / "state.db"
    source.write_bytes(b"not a database at all" * 100)
    target = tmp_path / "copy.db"

    with pytest.raises(sqlite3.DatabaseError):
        backup_database(source, target)

    assert not target.exists()


def test_integrity_problems_reports_what_is_wrong(db: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 1000)

    assert integrity_problems(db) == []
    assert integrity_problems(junk) != []


def stop_after(calls: int) -> Callable[[], bool]:
    """A should_stop that says no `calls` times, then yes."""
    asked = [0]

    def should_stop() -> bool:
        asked[0] += 1
        return asked[0] > calls

    return should_stop


def test_backup_database_stops_between_steps_when_asked_and_leaves_nothing(
    db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "copy.db"

    with pytest.raises(BackupCancelled, match="pages left"):
        backup_database(db, target, BackupOptions(pages_per_step=16),
                        should_stop=stop_after(3))

    assert list(tmp_path.glob("copy.db*")) == []


def test_backup_database_asked_to_stop_before_a_one_step_copy_does_not_start(
    db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "copy.db"

    with pytest.raises(BackupCancelled):
        backup_database(db, target, BackupOptions(stepped=False),
                        should_stop=stop_after(0))

    assert list(tmp_path.glob("copy.db*")) == []
