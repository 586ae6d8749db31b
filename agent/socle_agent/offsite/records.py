"""What the off-site jobs keep in the agent's state (`"offsite"` in state.json).

The repository is the truth about what is off-site; the state holds what the jobs last
learned of it, so that a copy after each backup needs one restic call, and the metrics
are read at scrape time without reaching the network:

    {"offsite": {
        "repository": "3f1a...",              # which destination this is about
        "listed": 1764163800.0,               # when its snapshots were last read
        "sent": {"postgres/app-20261126T023000Z": {"snapshot": "db13ccfb", ...}},
        "newest": {"postgres/app": {"kind": "postgres", "subject": "app",
                                    "backup": "app-20261126T023000Z", "finished": ...}},
        "copies": {"postgres/app": {"copied": ..., "duration": 4.2, "size": ..., ...}},
        "pending": {"postgres": 0, "k3s": 1},
        "repository_bytes": 123456789, "repository_measured": ...,
        "check": {"result": "pass", "finished": ..., "duration": ..., "reason": ""},
        "drills": {"postgres/app": {"result": "pass", "duration": 8.1, ...}}}}
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from socle_agent.catalogue import name_from_safe, safe_name
from socle_agent.config import Config
from socle_agent.offsite.environment import Destination
from socle_agent.state import State, load_state, update_state

SECTION = "offsite"
# <safe subject>-<UTC time>[-n], as catalogue.new_backup_id makes them
_BACKUP_ID = re.compile(r"^(?P<subject>[A-Za-z0-9_%-]+?)-\d{8}T\d{6}Z(?:-\d+)?$")
Record = dict[str, Any]


def load(config: Config) -> Record:
    """The off-site section of the state (empty when there is none, or no state)."""
    try:
        section = load_state(config.agent.state_file).get(SECTION, {})
    except (OSError, ValueError):
        return {}
    return section if isinstance(section, dict) else {}


def update(config: Config, change: Callable[[Record], None]) -> None:
    """Apply `change` to the off-site section, as one locked step of the state file."""

    def apply(state: State) -> None:
        section = state.setdefault(SECTION, {})
        if not isinstance(section, dict):
            section = state[SECTION] = {}
        change(section)

    update_state(config.agent.state_file, apply)


def fingerprint(destination: Destination) -> str:
    """A name for the destination (repository and host) that holds none of its secrets."""
    repository = destination.variables.get("RESTIC_REPOSITORY", "")
    return hashlib.sha256(f"{repository}\0{destination.host}".encode()).hexdigest()[:16]


def backup_key(kind: str, backup_id: str) -> str:
    """The key of one backup: `<kind>/<id>` (ids are plain file names)."""
    return f"{kind}/{backup_id}"


def subject_key(kind: str, subject: str) -> str:
    """The key of one subject: `<kind>/<subject as a safe file name>`."""
    return f"{kind}/{safe_name(subject)}"


def subject_from(kind: str, backup_id: str, tags: dict[str, str], label: str | None) -> str:
    """The subject of an off-site copy: its `<label>=` tag, else its id, else its kind.

    >>> subject_from("postgres", "app-20261126T023000Z", {"database": "app"}, "database")
    'app'
    >>> subject_from("k3s", "k3s-20261126T060000Z-2", {}, None)
    'k3s'
    """
    try:
        if label and tags.get(label):
            return name_from_safe(tags[label])
        match = _BACKUP_ID.match(backup_id)
        if match:
            return name_from_safe(match.group("subject"))
    except (ValueError, UnicodeDecodeError):
        pass
    return kind


def note_newest(section: Record, kind: str, subject: str, backup_id: str,
                finished: float) -> None:
    """Remember the newest backup of a subject known to be off-site."""
    newest = section.setdefault("newest", {})
    key = subject_key(kind, subject)
    if newest.get(key, {}).get("finished", 0.0) <= finished:
        newest[key] = {"kind": kind, "subject": subject, "backup": backup_id,
                       "finished": finished}
