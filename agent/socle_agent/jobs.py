"""Run a named job: one at a time per resource, result to the state file and to mail.

Every job, from the daemon or the command line, goes through `run_job`. It takes the
locks of the job's resources (a job finding one busy does not run), gives the job its
deadline, calls it, records the outcome in the state file (from which the metrics are
read) and sends a mail when the job's state changes: one when it starts failing, one
when it recovers, none for repeated results. A state file that cannot be written (a
full disk) does not stop the mail: the failure to record is mailed too.

The jobs are the sources' (see `socle_agent.sources`), named `<kind>_<action>`, plus
two built in here, `disk_check` and `prune`. After a job succeeds, the jobs the sources
ask for in `Source.follow_up` run next (the off-site copy after a backup), each as a
job of its own: its own locks, deadline, record and mail.

Example:

    result = run_job("postgres_backup", config, options={"database": "app"})
    result.status   # "ok", "failed", "aborted" or "busy"
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from socle_agent.base import (
    DrillFailed,
    DrillRecord,
    JobAborted,
    JobContext,
    JobOutcome,
    Progress,
    resource_locks,
)
from socle_agent.config import Config, backup_kinds
from socle_agent.diskguard import DiskFull, check_mounts
from socle_agent.mail import Mailer, MailError
from socle_agent.pruning import prune_kind
from socle_agent.source import DEFAULT_JOB_TIMEOUT
from socle_agent.sources import registry as source_registry
from socle_agent.state import State, load_state, update_state

log = logging.getLogger(__name__)
BUILTIN_TIMEOUT = 3600.0


@dataclass(frozen=True)
class JobSpec:
    """A job: its function, the resources it must hold alone, its deadline for a config."""

    func: Callable[[JobContext], JobOutcome]
    resources: tuple[str, ...]
    timeout: Callable[[Config], float] = lambda config: DEFAULT_JOB_TIMEOUT


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
    """All jobs: each source's `<kind>_<action>`, then the built-in ones."""
    jobs: dict[str, JobSpec] = {}
    for kind, source in source_registry().items():
        for action, spec in source.actions().items():
            jobs[f"{kind}_{action}"] = JobSpec(
                spec.run, source.resources, spec.timeout or (lambda config: DEFAULT_JOB_TIMEOUT)
            )
    every_resource = tuple(sorted({r for spec in jobs.values() for r in spec.resources}))
    jobs["disk_check"] = JobSpec(disk_check, (), lambda config: BUILTIN_TIMEOUT)
    jobs["prune"] = JobSpec(prune_all, every_resource, lambda config: BUILTIN_TIMEOUT)
    return jobs


def run_job(
    name: str,
    config: Config,
    *,
    cancel: threading.Event | None = None,
    options: Mapping[str, Any] | None = None,
    mailer: Mailer | None = None,
    progress: Progress | None = None,
    follow: bool = True,
) -> JobResult:
    """Run job `name` once and record its result (see the module docstring).

    `progress` is where the job shows it is alive (the daemon's watchdog reads it). With
    `follow`, the jobs the sources ask to follow a success run next; the result returned
    is this job's.
    """
    spec = registry().get(name)
    if spec is None:
        raise KeyError(f"no job named {name!r}")
    context = JobContext(
        config,
        cancel or threading.Event(),
        options or {},
        deadline=time.monotonic() + spec.timeout(config),
        progress=progress or Progress(),
    )
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
            status, error = "failed", describe(exc)
        result = JobResult(name, status, started, time.time(), outcome, error)
        _log_result(result)
        if status != "aborted":
            finish(config, result, drill, mailer or Mailer(config.mail))
    if follow and status == "ok" and outcome is not None:
        for job in follow_ups(config, name, outcome):
            run_job(job, config, cancel=context.cancel, mailer=mailer, progress=context.progress,
                    follow=False)
    return result


def follow_ups(config: Config, job: str, outcome: JobOutcome) -> list[str]:
    """The jobs the sources ask to run after `job` succeeded, each once, in registry order."""
    wanted: list[str] = []
    for source in source_registry().values():
        for follower in source.follow_up(config, job, outcome):
            if follower != job and follower not in wanted:
                wanted.append(follower)
    return wanted


def finish(config: Config, result: JobResult, drill: DrillRecord | None, mailer: Mailer) -> None:
    """Record the result and mail on a change of state; neither may raise.

    When the state cannot be written, the mail is sent all the same (there is no record
    of what was mailed before, so it may repeat) and says so.
    """
    try:
        record_result(config, result, drill)
    except (OSError, ValueError) as exc:
        log.error("%s: cannot record the result in %s: %s", result.job,
                  config.agent.state_file, exc)
        problem = f"the state file {config.agent.state_file} cannot be written: {exc}"
        notify_change(config, result, mailer, unrecorded=problem)
        return
    notify_change(config, result, mailer)


def describe(exc: BaseException) -> str:
    """A one-line account of a job's failure for the state, the logs and the mail."""
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


def notify_change(
    config: Config, result: JobResult, mailer: Mailer, unrecorded: str = ""
) -> None:
    """Mail when the job's state differs from what was last mailed about it.

    With `unrecorded` (why the state could not be written) a failure is always mailed.
    """
    if not mailer.enabled:
        return
    state_path = config.agent.state_file
    try:
        previously = load_state(state_path).get("jobs", {}).get(result.job, {}).get("notified")
    except (OSError, ValueError):
        previously = None
    if result.status == (previously or "ok") and not (unrecorded and result.status != "ok"):
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
    if unrecorded:
        body += f"\nAlso: {unrecorded}. Until it can, this mail may repeat.\n"
    try:
        mailer.send(subject, body)
    except MailError as exc:
        # Leave "notified" unchanged so the next run tries again.
        log.error("%s: %s", result.job, exc)
        return
    if unrecorded:
        return

    def mark(state: State) -> None:
        state.setdefault("jobs", {}).setdefault(result.job, {})["notified"] = result.status

    try:
        update_state(state_path, mark)
    except OSError as exc:
        log.error("%s: cannot record the mail in %s: %s", result.job, state_path, exc)


def disk_check(context: JobContext) -> JobOutcome:
    """Job: every configured mount keeps its free-space reserve; fails with an alert if not."""
    verdicts = check_mounts(context.config.disk)
    short = [v.reason for v in verdicts if not v.fits]
    if short:
        raise DiskFull("; ".join(short))
    return JobOutcome(summary=", ".join(v.reason for v in verdicts))


def prune_all(context: JobContext) -> JobOutcome:
    """Job: apply retention to every kind of backup."""
    deleted = []
    for kind in backup_kinds():
        context.check(f"pruning {kind}")
        deleted += prune_kind(context.config, kind)
    return JobOutcome(summary=f"{len(deleted)} backups deleted")
