"""Run a named job: one at a time per resource, result to the state file and to mail.

Every job, from the daemon or the command line, goes through `run_job`. It takes the
locks of the job's resources (a job finding one busy does not run), calls the job's
function, records the outcome in the state file (from which the metrics are read) and
sends a mail when the job's state changes: one when it starts failing, one when it
recovers, none for repeated results.

Jobs come from the source modules (see `socle_agent.sources`) plus the two built in
here, `disk_check` and `prune`.

Example:

    result = run_job("postgres_backup", config, options={"database": "app"})
    result.status   # "ok", "failed", "aborted" or "busy"
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socle_agent import catalogue
from socle_agent.config import Config
from socle_agent.diskguard import DiskFull, check_mounts
from socle_agent.mail import Mailer, MailError
from socle_agent.retention import Item, plan_retention
from socle_agent.state import State, load_state, update_state

log = logging.getLogger(__name__)
SOURCE_MODULES = ("postgres", "k3s")


class JobAborted(Exception):
    """The job stopped early because the agent was asked to stop."""


class DrillFailed(Exception):
    """A drill ran and found the backup unusable; `reason` says why."""

    def __init__(self, kind: str, reason: str, duration: float) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.duration = duration


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


@dataclass
class JobContext:
    """What a job function receives."""

    config: Config
    cancel: threading.Event = field(default_factory=threading.Event)
    options: Mapping[str, Any] = field(default_factory=dict)

    def check_cancel(self) -> None:
        """Raise JobAborted if the agent is stopping."""
        if self.cancel.is_set():
            raise JobAborted("the agent is stopping")


JobFunction = Callable[[JobContext], JobOutcome]


@dataclass(frozen=True)
class JobSpec:
    """A job: its function and the resources it must hold alone."""

    func: JobFunction
    resources: tuple[str, ...]


@dataclass(frozen=True)
class JobResult:
    """How one run of a job ended."""

    job: str
    status: str
    started: float
    finished: float
    outcome: JobOutcome | None = None
    error: str = ""

    @property
    def duration(self) -> float:
        """Seconds the job ran."""
        return self.finished - self.started


def registry() -> dict[str, JobSpec]:
    """All jobs: the built-in ones and those each source module declares in `JOBS`."""
    jobs = {
        "disk_check": JobSpec(disk_check, ()),
        "prune": JobSpec(prune_all, SOURCE_MODULES),
    }
    for name in SOURCE_MODULES:
        try:
            module = importlib.import_module(f"socle_agent.sources.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"socle_agent.sources.{name}":
                raise
            continue
        jobs.update(getattr(module, "JOBS", {}))
    return jobs


@contextlib.contextmanager
def resource_locks(lock_dir: Path, resources: tuple[str, ...]) -> Iterator[bool]:
    """Hold the locks of `resources` without waiting; yields False if one is busy.

    The locks are `flock`s on files, so they also hold between the daemon and a command
    run by hand, and vanish with a killed process.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
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


def run_job(
    name: str,
    config: Config,
    *,
    cancel: threading.Event | None = None,
    options: Mapping[str, Any] | None = None,
    mailer: Mailer | None = None,
) -> JobResult:
    """Run job `name` once and record its result (see the module docstring)."""
    spec = registry().get(name)
    if spec is None:
        raise KeyError(f"no job named {name!r}")
    context = JobContext(config, cancel or threading.Event(), options or {})
    started = time.time()
    with resource_locks(config.agent.lock_dir, spec.resources) as acquired:
        if not acquired:
            log.warning("%s: not started, another job holds %s", name, "/".join(spec.resources))
            return JobResult(name, "busy", started, time.time(), error="resource busy")
        log.info("%s: started", name)
        outcome: JobOutcome | None = None
        drill: DrillRecord | None = None
        try:
            outcome = spec.func(context)
            status, error = "ok", ""
            drill = outcome.drill
        except JobAborted as exc:
            status, error = "aborted", str(exc)
        except DrillFailed as exc:
            status, error = "failed", exc.reason
            drill = DrillRecord(exc.kind, False, exc.duration, exc.reason)
        except Exception as exc:
            # A job's failure must never take the daemon down; it is recorded and mailed.
            log.debug("%s: failure details", name, exc_info=True)
            status, error = "failed", _describe(exc)
        result = JobResult(name, status, started, time.time(), outcome, error)
        _log_result(result)
        if status != "aborted":
            record_result(config, result, drill)
            notify_change(config, result, mailer or Mailer(config.mail))
    return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DiskFull):
        return f"disk guard refused the job: {exc}"
    return str(exc) or type(exc).__name__


def _log_result(result: JobResult) -> None:
    if result.status == "ok":
        summary = result.outcome.summary if result.outcome else ""
        log.info("%s: ok in %.1f s%s", result.job, result.duration, f", {summary}" * bool(summary))
    elif result.status == "aborted":
        log.warning("%s: aborted after %.1f s: %s", result.job, result.duration, result.error)
    else:
        log.error("%s: FAILED after %.1f s: %s", result.job, result.duration, result.error)


def record_result(config: Config, result: JobResult, drill: DrillRecord | None) -> State:
    """Write the job's result (and a drill's) into the state file."""

    def change(state: State) -> None:
        record = state.setdefault("jobs", {}).setdefault(result.job, {})
        record.update(last_run=result.finished, duration=result.duration, status=result.status)
        if result.status == "ok":
            record.update(last_success=result.finished, error="", consecutive_failures=0)
            if result.outcome and result.outcome.size_bytes is not None:
                record["size"] = result.outcome.size_bytes
        else:
            record["error"] = result.error
            record["failures_total"] = record.get("failures_total", 0) + 1
            record["consecutive_failures"] = record.get("consecutive_failures", 0) + 1
        if drill is not None:
            state.setdefault("drills", {})[drill.kind] = {
                "result": "pass" if drill.passed else "fail",
                "duration": drill.duration,
                "reason": drill.reason,
                "finished": result.finished,
            }

    return update_state(config.agent.state_file, change)


def notify_change(config: Config, result: JobResult, mailer: Mailer) -> None:
    """Mail when the job's state differs from what was last mailed about it."""
    if not mailer.enabled:
        return
    state_path = config.agent.state_file
    previously = load_state(state_path).get("jobs", {}).get(result.job, {}).get("notified", "ok")
    if result.status == previously:
        return
    if result.status == "failed":
        subject = f"{result.job} FAILED"
        body = (
            f"The job {result.job} failed at {time.ctime(result.finished)} "
            f"after {result.duration:.1f} s:\n\n{result.error}\n\n"
            "No further mail is sent while it keeps failing; one is sent when it recovers.\n"
        )
    else:
        subject = f"{result.job} recovered"
        body = f"The job {result.job} succeeded again at {time.ctime(result.finished)}.\n"
    try:
        mailer.send(subject, body)
    except MailError as exc:
        # Leave "notified" unchanged so the next run tries again.
        log.error("%s: %s", result.job, exc)
        return

    def mark(state: State) -> None:
        state.setdefault("jobs", {}).setdefault(result.job, {})["notified"] = result.status

    update_state(state_path, mark)


def disk_check(context: JobContext) -> JobOutcome:
    """Job: every configured mount keeps its free-space reserve; fails with an alert if not."""
    verdicts = check_mounts(context.config.disk)
    short = [v.reason for v in verdicts if not v.fits]
    if short:
        raise DiskFull("; ".join(short))
    return JobOutcome(summary=", ".join(v.reason for v in verdicts))


def prune_kind(config: Config, kind: str, dry_run: bool = False) -> list[catalogue.Backup]:
    """Apply the retention policy to one kind of backup; returns the backups deleted.

    Also records in the state what is retained, for the metrics.
    """
    if not dry_run:
        catalogue.remove_partials(config.agent.backup_dir, kind)
    backups = catalogue.list_backups(config.agent.backup_dir, kind)
    items = {
        b.manifest.id: Item(
            id=b.manifest.id,
            group=f"{kind}/{b.manifest.subject}",
            finished=b.manifest.finished,
            size=b.manifest.size_bytes,
            verified=bool(b.manifest.details.get("verified")),
        )
        for b in backups
    }
    plan = plan_retention(items.values(), config.retention)
    doomed = [b for b in backups if b.manifest.id in {i.id for i in plan.delete}]
    if dry_run:
        return doomed
    for backup in doomed:
        log.info("prune: deleting %s/%s", kind, backup.manifest.id)
        catalogue.remove_backup(backup)
    kept = [b for b in backups if b not in doomed]

    def change(state: State) -> None:
        state.setdefault("backups", {})[kind] = {
            "retained": len(kept),
            "newest_end": kept[-1].manifest.finished if kept else None,
            "total_bytes": sum(b.manifest.size_bytes for b in kept),
        }

    update_state(config.agent.state_file, change)
    return doomed


def prune_all(context: JobContext) -> JobOutcome:
    """Job: apply retention to every kind of backup."""
    deleted = []
    for kind in SOURCE_MODULES:
        deleted += prune_kind(context.config, kind)
    return JobOutcome(summary=f"{len(deleted)} backups deleted")
