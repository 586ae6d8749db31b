"""The atomic JSON state file."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from socle_agent.state import load_state, save_state, update_state


def test_load_state_with_no_file_is_empty(tmp_path: Path) -> None:
    assert load_state(tmp_path / "missing.json") == {}


def test_save_state_then_load_gives_it_back_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.json"
    save_state(path, {"jobs": {"prune": {"status": "ok"}}})
    assert load_state(path) == {"jobs": {"prune": {"status": "ok"}}}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_load_state_with_damaged_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"jobs": ')
    with pytest.raises(ValueError, match=str(path)):
        load_state(path)


def _bump(path: str) -> None:
    for _ in range(50):
        update_state(Path(path), lambda s: s.update(n=s.get("n", 0) + 1))


def test_update_state_from_several_processes_loses_no_update(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    workers = [multiprocessing.Process(target=_bump, args=(str(path),)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert json.loads(path.read_text())["n"] == 150
