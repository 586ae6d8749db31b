"""Job `offsite_check`: restic reads back part of the off-site repository and checks it.

`restic check --read-data-subset=N%` (`offsite.check_read_data_percent`) checks the
repository's structure and reads a different part of its data each time, so over weeks
every pack file is read back. Stale locks (a restic that was stopped) are removed first.
A damaged repository fails the job with the pack files named as they are stored
(`data/<xx>/<id>`), which the mail and the state carry; the result and the repository's
size (measured here) go to the metrics.

Example:

    socle-agent check offsite
"""

from __future__ import annotations

import time

from socle_agent.base import JobContext, JobOutcome
from socle_agent.offsite import records
from socle_agent.offsite.fetch import remove_abandoned
from socle_agent.offsite.restic import CheckResult, OffsiteError, Restic
from socle_agent.offsite.settings import settings_of

SHOWN_PROBLEMS = 5


def describe(result: CheckResult) -> str:
    """The failure of a check in one paragraph: the damaged packs first, then what restic said.

    >>> describe(CheckResult(False, ("Pack ID does not match",), ("data/ab/ab01",)))
    'damaged pack file(s) off-site: data/ab/ab01; restic check: Pack ID does not match'
    """
    parts = []
    if result.damaged_packs:
        parts.append("damaged pack file(s) off-site: " + ", ".join(result.damaged_packs))
    shown = [line for line in result.problems if "repository contains errors" not in line]
    parts.append("restic check: " + " | ".join(shown[:SHOWN_PROBLEMS] or ["errors found"]))
    return "; ".join(parts)


def check_job(context: JobContext) -> JobOutcome:
    """Job offsite_check: check the repository, reading part of its data."""
    config = context.config
    settings = settings_of(config)
    restic = Restic.open(settings)
    remove_abandoned(config.agent.backup_dir)
    started = time.monotonic()
    context.check("removing stale locks off-site")
    restic.unlock(context)
    context.check("checking the off-site repository")
    result = restic.check(context, settings.check_read_data_percent)
    size = restic.repository_bytes(context) if result.passed else None
    duration = time.monotonic() - started
    reason = "" if result.passed else describe(result)

    def change(section: records.Record) -> None:
        section["check"] = {"result": "pass" if result.passed else "fail", "reason": reason,
                            "duration": duration, "finished": time.time(),
                            "damaged": list(result.damaged_packs),
                            "read_data_percent": settings.check_read_data_percent}
        if size is not None:
            section["repository_bytes"] = size
            section["repository_measured"] = time.time()

    records.update(config, change)
    if not result.passed:
        raise OffsiteError(reason)
    return JobOutcome(summary=f"no errors, {settings.check_read_data_percent:g}% of the data "
                              f"read back, the repository holds {size} bytes")
