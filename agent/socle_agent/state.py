"""The agent's own state: a small JSON file written atomically.

The file holds, per job, the last run and its outcome, and, per backup kind, what
the catalogue held after the last prune. It is rewritten whole: written to a temporary
file, fsynced, renamed over the old one, and the directory fsynced, so a crash leaves
either the old or the new file, never half of one.

Example of its content:

    {"jobs": {"postgres_backup": {"last_run": 1764163800.0, "status": "ok", ...}},
     "backups": {"postgres": {"retained": 5, "newest_end": 1764163860.0}}}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

State = dict[str, Any]


def load_state(path: Path) -> State:
    """Read the state file; a missing file is an empty state.

    A file that is not valid JSON (it can only be damaged by hand, since it is written
    atomically) raises ValueError naming the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the state file is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the state file does not hold a JSON object")
    return data


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: temporary file, fsync, rename, fsync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state(path: Path, state: State) -> None:
    """Write `state` to `path` atomically."""
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    write_atomically(path, text.encode("utf-8"))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def update_state(path: Path, change: Callable[[State], None]) -> State:
    """Apply `change` to the state on disk and write it back, as one locked step.

    The daemon and a command run by hand may both finish jobs; the lock keeps one from
    overwriting what the other just wrote.
    """
    with _locked(path):
        state = load_state(path)
        change(state)
        save_state(path, state)
        return state
