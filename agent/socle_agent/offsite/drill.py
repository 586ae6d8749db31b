"""Job `offsite_drill`: the newest off-site copies restored as after the node's loss.

For each subject the node backs up (each database, the k3s datastore), the newest copy
off-site is fetched into a scratch catalogue, checked against its manifest, then drilled
by its own source exactly as a local backup is (a PostgreSQL dump restored into the
scratch database and compared with the manifest's row counts and checks; a k3s snapshot
unpacked and its datastore checked). The time from the first restic call to the end of
the checks is what a restore from off-site takes, and is compared with the kind's RTO
target (`drill.rto_seconds`). Each result is kept per subject for the metrics; the job
fails if one failed. Subjects: those with a backup in the catalogue, or, on a node
without any (a rebuilt one), every subject found off-site; `--kind` and `--subject`
narrow the choice.

Example:

    socle-agent drill offsite --kind postgres
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from socle_agent import catalogue
from socle_agent.base import (
    AgentError,
    JobAborted,
    JobContext,
    JobOutcome,
    ResourceBusy,
    held,
)
from socle_agent.config import backup_kinds
from socle_agent.offsite import records
from socle_agent.offsite.fetch import fetched, remove_abandoned
from socle_agent.offsite.restic import OffsiteError, Restic, Snapshot, iter_tagged
from socle_agent.offsite.settings import settings_of
from socle_agent.sources import registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """The newest off-site copy of one subject."""

    kind: str
    subject: str
    snapshot: Snapshot

    @property
    def backup_id(self) -> str:
        """The id of the backup the copy holds."""
        assert self.snapshot.backup_id is not None
        return self.snapshot.backup_id


@dataclass(frozen=True)
class Verdict:
    """How the drill of one subject went."""

    target: Target
    passed: bool
    seconds: float
    reason: str = ""


def choose(context: JobContext, snapshots: list[Snapshot], kinds: tuple[str, ...]
           ) -> list[Target]:
    """The newest copy of each subject to drill (see the module docstring)."""
    config = context.config
    wanted_kind = context.options.get("only_kind")
    wanted_subject = context.options.get("subject")
    newest: dict[tuple[str, str], Snapshot] = {}
    sources = registry()
    for snapshot in iter_tagged(snapshots, kinds):
        assert snapshot.kind is not None and snapshot.backup_id is not None
        subject = records.subject_from(snapshot.kind, snapshot.backup_id, dict(snapshot.tags),
                                       sources[snapshot.kind].subject_label)
        newest[(snapshot.kind, subject)] = snapshot  # oldest first: the last one wins
    targets = []
    for kind in kinds:
        if wanted_kind and kind != wanted_kind:
            continue
        local = {b.manifest.subject for b in catalogue.list_backups(config.agent.backup_dir, kind)}
        for (copy_kind, subject), snapshot in sorted(newest.items()):
            if copy_kind != kind or (wanted_subject and subject != wanted_subject):
                continue
            if local and subject not in local and not wanted_subject:
                continue
            targets.append(Target(kind, subject, snapshot))
    return targets


def drill_one(context: JobContext, restic: Restic, target: Target) -> Verdict:
    """Fetch, check and drill one copy under its kind's lock; a copy that cannot be
    restored is a failed verdict, not an error."""
    source = registry()[target.kind]
    drill = source.actions()["drill"]
    started = time.monotonic()
    try:
        with held(context.config.agent.lock_dir, source.resources), fetched(
                context, restic, target.kind, target.backup_id, log.info) as folder:
            config = replace(context.config,
                             agent=replace(context.config.agent, backup_dir=folder))
            drill.run(replace(context, config=config, options={}))
    except (ResourceBusy, JobAborted):
        raise  # not tried: no verdict on the copy
    except AgentError as exc:
        # whatever kept it from being restored and checked (restic, the manifest, the
        # restore, the deadline) fails the drill: that is what it is there to find
        reason = getattr(exc, "reason", "") or str(exc)
        return Verdict(target, False, time.monotonic() - started, reason)
    return Verdict(target, True, time.monotonic() - started)


def drill_job(context: JobContext) -> JobOutcome:
    """Job offsite_drill: drill the newest off-site copy of each subject (module docstring)."""
    config = context.config
    settings = settings_of(config)
    restic = Restic.open(settings)
    remove_abandoned(config.agent.backup_dir)
    kinds = tuple(k for k in settings.kinds_to_copy(backup_kinds())
                  if "drill" in registry()[k].actions())
    context.check("listing what is off-site")
    targets = choose(context, restic.snapshots(context), kinds)
    if not targets:
        raise OffsiteError("no off-site copy to drill" + (
            f" of {context.options['only_kind']}" if context.options.get("only_kind") else ""))
    verdicts = []
    for target in targets:
        context.check(f"drilling the off-site copy of {target.kind}/{target.subject}")
        verdict = drill_one(context, restic, target)
        log.info("offsite_drill: %s/%s %s %s in %.1f s%s", target.kind, target.subject,
                 target.backup_id, "passed" if verdict.passed else "FAILED", verdict.seconds,
                 f": {verdict.reason}" if verdict.reason else "")
        _record(context, verdict)
        verdicts.append(verdict)
    failed = [v for v in verdicts if not v.passed]
    if failed:
        raise OffsiteError("off-site drill failed: " + " | ".join(
            f"{v.target.kind}/{v.target.backup_id}: {v.reason}" for v in failed))
    return JobOutcome(summary=", ".join(_describe(config.drill.rto_seconds, v) for v in verdicts))


def _describe(rto: Mapping[str, float], verdict: Verdict) -> str:
    target = rto.get(verdict.target.kind)
    text = f"{verdict.target.kind}/{verdict.target.backup_id} passed in {verdict.seconds:.1f} s"
    if target is not None and verdict.seconds > target:
        text += f", over the RTO target of {target:.0f} s"
    return text


def _record(context: JobContext, verdict: Verdict) -> None:
    target = verdict.target

    def change(section: records.Record) -> None:
        section.setdefault("drills", {})[records.subject_key(target.kind, target.subject)] = {
            "kind": target.kind, "subject": target.subject, "backup": target.backup_id,
            "result": "pass" if verdict.passed else "fail", "duration": verdict.seconds,
            "reason": verdict.reason, "finished": time.time()}

    records.update(context.config, change)
