"""What every job and every source shares: context, outcome, errors and their exit codes, locks.

Sources import this module and nothing of `jobs`, `cli` or `daemon`, so dependencies
read one way: cli/daemon -> jobs -> sources -> base.

A job receives a `JobContext`. It calls `context.check()` between steps (and while it
waits on a program): that raises `JobAborted` when the agent is stopping and
`DeadlineExceeded` past the job's deadline, and tells the daemon's watchdog that the job
is making progress. Every network call and wait takes its timeout from
`context.timeout(...)`, so none can outlive the job's deadline.

Example:

    def backup(context: JobContext) -> JobOutcome:
        for database in databases:
            context.check(f"dumping {database}")
            ...
        return JobOutcome(size_bytes=written, summary="2 databases")
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from socle_agent.config import Config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_REFUSED = 3
EXIT_NOT_FOUND = 4
EXIT_BUSY = 75  # EX_TEMPFAIL: try again later


class AgentError(Exception):
    """An error the agent reports to a person; `exit_code` is what the command line returns."""

    exit_code = EXIT_FAILED


class JobAborted(AgentError):
    """The job stopped early because the agent was asked to stop."""


class DeadlineExceeded(AgentError):
    """The job, or one call in it, ran past its deadline and was stopped."""


class ResourceBusy(AgentError):
    """Another job holds a resource this one needs."""

    exit_code = EXIT_BUSY


class DrillFailed(AgentError):
    """A drill ran and found the backup unusable; `reason` says why."""

    def __init__(self, kind: str, reason: str, duration: float) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.duration = duration


class RestoreError(AgentError):
    """A restore did not complete; what was live before is as it was."""


class RestoreRefused(RestoreError):
    """A restore was refused before anything was changed (damaged backup, target exists...)."""

    exit_code = EXIT_REFUSED


class BackupNotFound(RestoreError, LookupError):
    """No backup has the id that was asked for."""

    exit_code = EXIT_NOT_FOUND


@dataclass(frozen=True)
class DrillRecord:
    """The result of a drill, kept in the state under `drills.<kind>`."""

    kind: str
    passed: bool
    duration: float
    reason: str = ""


@dataclass(frozen=True)
class JobOutcome:
    """What a successful job reports: bytes written, a line for people, a drill result."""

    size_bytes: int | None = None
    summary: str = ""
    drill: DrillRecord | None = None


class Progress:
    """When the job last showed progress, and doing what; read by the daemon's watchdog."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = time.monotonic()
        self._what = "starting"

    def beat(self, what: str = "") -> None:
        """Record progress now (and what the job is doing, when given)."""
        with self._lock:
            self._at = time.monotonic()
            if what:
                self._what = what

    def last(self) -> tuple[float, str]:
        """(monotonic time of the last beat, what the job was doing then)."""
        with self._lock:
            return self._at, self._what


@dataclass
class JobContext:
    """What a job function receives: configuration, stop signal, options, deadline, progress."""

    config: Config
    cancel: threading.Event = field(default_factory=threading.Event)
    options: Mapping[str, Any] = field(default_factory=dict)
    deadline: float = math.inf
    progress: Progress = field(default_factory=Progress)

    def check(self, what: str = "") -> None:
        """Raise JobAborted if the agent is stopping, DeadlineExceeded if past the deadline.

        Otherwise record progress (see `Progress`).
        """
        if self.cancel.is_set():
            raise JobAborted("the agent is stopping")
        if time.monotonic() > self.deadline:
            raise DeadlineExceeded(
                "the job ran past its deadline" + (f" while {what}" if what else "")
            )
        self.progress.beat(what)

    def remaining(self) -> float:
        """Seconds left before the deadline (never below zero)."""
        return max(0.0, self.deadline - time.monotonic())

    def timeout(self, cap: float) -> float:
        """A timeout for one call: `cap`, or less when the deadline is nearer.

        Never zero, since 0 means "no timeout" to several libraries.
        """
        return max(0.001, min(cap, self.remaining()))

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` (within the deadline); raise JobAborted if the agent stops meanwhile."""
        if self.cancel.wait(min(seconds, self.remaining())):
            raise JobAborted("the agent is stopping")
        self.check()


@contextlib.contextmanager
def resource_locks(lock_dir: Path, resources: tuple[str, ...]) -> Iterator[bool]:
    """Hold the locks of `resources` without waiting; yields False if one is busy.

    The locks are `flock`s on files, so they also hold between the daemon and a command
    run by hand, and vanish with a killed process.
    """
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.ExitStack() as stack:
        for resource in sorted(resources):
            handle = stack.enter_context(open(lock_dir / f"{resource}.lock", "a"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                yield False
                return
        yield True


@contextlib.contextmanager
def held(lock_dir: Path, resources: tuple[str, ...]) -> Iterator[None]:
    """Like `resource_locks`, but raise ResourceBusy when a resource is taken."""
    with resource_locks(lock_dir, resources) as acquired:
        if not acquired:
            raise ResourceBusy(f"another job holds {'/'.join(resources)}; try again later")
        yield
