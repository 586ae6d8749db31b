"""Job `offsite_copy`: every backup of the catalogue not yet off-site is sent there.

It runs after each successful backup or snapshot (`copy_after_backup`) and on its
schedule. What is off-site is known from the state (`records`), read again from the
repository when that knowledge is older than `relist_seconds`, belongs to another
destination, or `--relist` asks for it; so the copy after a backup costs one restic call,
and a copy missed (the host unreachable, the agent down) is caught up by the next run.

Each backup folder becomes one restic snapshot of its path, with `--host` the node's
inventory name, dated with the backup's own end (so the operator's retention reads the
backups' dates) and tagged `kind=<kind>`, `database=<safe name>` (sources with several
subjects) and `backup=<id>` (docs/offsite.md). The newest backups go first. A folder is
sent under its kind's lock, so retention cannot delete it meanwhile. The job stops at
the first backup that cannot be sent: what was sent before it is recorded, and the rest
is caught up next time.

Example:

    socle-agent copy offsite [--relist]
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from socle_agent import catalogue
from socle_agent.base import JobContext, JobOutcome, resource_locks
from socle_agent.config import backup_kinds
from socle_agent.manifest import MANIFEST_NAME
from socle_agent.offsite import records
from socle_agent.offsite.restic import OffsiteError, Restic, Snapshot, iter_tagged
from socle_agent.offsite.settings import OffsiteSettings, settings_of
from socle_agent.sources import registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sent:
    """One backup sent: its key, the bytes restic added to the repository, how long."""

    key: str
    added: int
    seconds: float


def tags_for(manifest_kind: str, subject: str, backup_id: str) -> dict[str, str]:
    """The tags of a backup's snapshot (docs/offsite.md), every value plain.

    >>> tags_for("postgres", "app", "app-20261126T023000Z")
    {'kind': 'postgres', 'database': 'app', 'backup': 'app-20261126T023000Z'}
    """
    tags = {"kind": manifest_kind}
    label = registry()[manifest_kind].subject_label if manifest_kind in registry() else None
    if label:
        tags[label] = catalogue.safe_name(subject)
    tags["backup"] = backup_id
    return tags


def learn_from_repository(context: JobContext, restic: Restic, kinds: tuple[str, ...]
                          ) -> dict[str, dict[str, object]]:
    """Read the node's snapshots and record what is off-site; returns the `sent` map."""
    context.check("listing what is off-site")
    snapshots = restic.snapshots(context)
    known = records.load(context.config)
    incomplete = set(known.get("incomplete", []))
    sent: dict[str, dict[str, object]] = {}
    labels = {kind: source.subject_label for kind, source in registry().items()}
    tagged: list[tuple[Snapshot, str]] = []
    for snapshot in iter_tagged(snapshots, kinds):
        if snapshot.id in incomplete or snapshot.id[:8] in incomplete:
            continue
        assert snapshot.kind is not None and snapshot.backup_id is not None
        subject = records.subject_from(snapshot.kind, snapshot.backup_id, dict(snapshot.tags),
                                       labels.get(snapshot.kind))
        sent[records.backup_key(snapshot.kind, snapshot.backup_id)] = {
            "snapshot": snapshot.id[:8], "finished": snapshot.time}
        tagged.append((snapshot, subject))
    fingerprint = records.fingerprint(restic.destination)

    def change(section: records.Record) -> None:
        if section.get("repository") != fingerprint:
            # another destination: nothing learned of the previous one holds here
            for stale in ("newest", "copies", "sent", "incomplete", "repository_bytes",
                          "repository_measured", "check"):
                section.pop(stale, None)
        section["repository"] = fingerprint
        section["listed"] = time.time()
        section["sent"] = sent
        section["newest"] = {}
        for snapshot, subject in tagged:
            assert snapshot.kind is not None and snapshot.backup_id is not None
            records.note_newest(section, snapshot.kind, subject, snapshot.backup_id,
                                snapshot.time)

    records.update(context.config, change)
    return sent


def known_sent(context: JobContext, settings: OffsiteSettings, restic: Restic,
               kinds: tuple[str, ...]) -> dict[str, dict[str, object]]:
    """What is off-site: from the state, or from the repository when the state is stale."""
    known = records.load(context.config)
    fresh = (
        known.get("repository") == records.fingerprint(restic.destination)
        and time.time() - float(known.get("listed", 0.0)) < settings.relist_seconds
        and not context.options.get("relist")
    )
    if fresh:
        return dict(known.get("sent", {}))
    return learn_from_repository(context, restic, kinds)


def send(context: JobContext, settings: OffsiteSettings, restic: Restic,
         backup: catalogue.Backup) -> Sent | None:
    """Send one backup folder under its kind's lock; None when it was not sent (busy, or
    deleted by retention meanwhile)."""
    manifest = backup.manifest
    key = records.backup_key(manifest.kind, manifest.id)
    source = registry()[manifest.kind]
    with resource_locks(context.config.agent.lock_dir, source.resources) as free:
        if not free:
            log.info("offsite_copy: %s left for later, another job holds %s", key,
                     "/".join(source.resources))
            return None
        if not (backup.path / MANIFEST_NAME).is_file():
            return None
        context.check(f"sending {key}")
        started = time.monotonic()
        tags = tags_for(manifest.kind, manifest.subject, manifest.id)
        try:
            summary = restic.backup(context, backup.path, tags, manifest.finished,
                                    settings.transfer_timeout_seconds)
        except OffsiteError as exc:
            if "already locked" not in str(exc):
                raise
            # a restic that was stopped (a check past its deadline) left its lock behind
            restic.unlock(context)
            summary = restic.backup(context, backup.path, tags, manifest.finished,
                                    settings.transfer_timeout_seconds)
    seconds = time.monotonic() - started
    if summary.incomplete:
        records.update(context.config, lambda section: section.setdefault(
            "incomplete", []).append(summary.snapshot_id))
        raise OffsiteError(f"{key}: restic could not read every file; snapshot "
                           f"{summary.snapshot_id} is incomplete and is sent again next time")

    def change(section: records.Record) -> None:
        section.setdefault("sent", {})[key] = {"snapshot": summary.snapshot_id,
                                               "finished": manifest.finished}
        records.note_newest(section, manifest.kind, manifest.subject, manifest.id,
                            manifest.finished)
        section.setdefault("copies", {})[records.subject_key(manifest.kind, manifest.subject)] = {
            "kind": manifest.kind, "subject": manifest.subject, "backup": manifest.id,
            "copied": time.time(), "duration": seconds, "size": manifest.size_bytes,
            "added": summary.data_added}
        if "repository_bytes" in section:
            # measured by each check; in between, what the copies added
            section["repository_bytes"] += summary.data_added

    records.update(context.config, change)
    log.info("offsite_copy: %s sent in %.1f s, %d bytes new off-site", key, seconds,
             summary.data_added)
    return Sent(key, summary.data_added, seconds)


def copy_job(context: JobContext) -> JobOutcome:
    """Job offsite_copy: send what the catalogue holds and the repository does not."""
    config = context.config
    settings = settings_of(config)
    restic = Restic.open(settings)
    kinds = settings.kinds_to_copy(backup_kinds())
    sent = known_sent(context, settings, restic, kinds)
    local = [b for kind in kinds for b in catalogue.list_backups(config.agent.backup_dir, kind)]
    missing = [b for b in local if records.backup_key(b.manifest.kind, b.manifest.id) not in sent]
    missing.sort(key=lambda b: (b.manifest.finished, b.manifest.id), reverse=True)
    done: list[Sent] = []
    try:
        for backup in missing:
            result = send(context, settings, restic, backup)
            if result is not None:
                done.append(result)
    except OffsiteError as exc:
        raise OffsiteError(
            f"{exc}; {len(done)} of {len(missing)} backups sent before that, the rest is "
            "sent by the next run") from None
    finally:
        _record_pending(context, local, {s.key for s in done})
    added = sum(s.added for s in done)
    summary = (f"{len(done)} backups sent ({added} bytes new off-site), "
               f"{len(local) - len(missing)} were there already")
    if len(done) < len(missing):
        summary += f", {len(missing) - len(done)} left for the next run"
    return JobOutcome(size_bytes=added, summary=summary)


def _record_pending(context: JobContext, local: list[catalogue.Backup],
                    sent_now: set[str]) -> None:
    """Count per kind what is still only local; forget sent backups no longer local."""
    local_keys = {records.backup_key(b.manifest.kind, b.manifest.id): b for b in local}

    def change(section: records.Record) -> None:
        sent = section.get("sent", {})
        pending: dict[str, int] = {}
        for key, backup in local_keys.items():
            pending.setdefault(backup.manifest.kind, 0)
            if key not in sent and key not in sent_now:
                pending[backup.manifest.kind] += 1
        section["pending"] = pending
        # the newest of each subject stays in "newest"; the list of what was sent need
        # only cover what the catalogue still holds
        section["sent"] = {key: value for key, value in sent.items() if key in local_keys}

    records.update(context.config, change)
