"""The `offsite` source: copies of every other source's backups in a restic repository
on another machine, checked, drilled and restorable from there.

It holds no backup of its own: it is an origin (`Source.is_origin`) for the others. The
work is done in `socle_agent.offsite` (one module per job); this module plugs it in:

    socle-agent copy offsite [--relist]     # job offsite_copy, also after each backup
    socle-agent check offsite               # job offsite_check
    socle-agent drill offsite [--kind K] [--subject S]   # job offsite_drill
    socle-agent list --offsite              # what is off-site beside what is local
    socle-agent restore postgres --from offsite --backup ID --database NAME ...
    socle-agent restore k3s --from offsite --snapshot ID

Its settings are the `[offsite]` table (`socle_agent.offsite.settings`); where the
repository is, and its credentials, are in the node's root-only files (docs/offsite.md).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

from socle_agent.base import JobContext, JobOutcome
from socle_agent.config import Config, Table, backup_kinds
from socle_agent.offsite import records
from socle_agent.offsite.check import check_job
from socle_agent.offsite.copy import copy_job
from socle_agent.offsite.drill import drill_job
from socle_agent.offsite.fetch import fetched
from socle_agent.offsite.restic import Restic, iter_tagged
from socle_agent.offsite.settings import KIND, OffsiteSettings, parse_settings, settings_of
from socle_agent.source import Action, RemoteBackup, Report, Source

# (metric, key in a copy's record, help)
_COPY_GAUGES = (
    ("socle_offsite_last_copy_timestamp_seconds", "copied",
     "When the newest backup of each subject was last sent off-site."),
    ("socle_offsite_last_copy_duration_seconds", "duration",
     "How long the last copy of each subject took."),
    ("socle_offsite_last_copy_size_bytes", "size", "Size of the backup last sent off-site."),
    ("socle_offsite_last_copy_added_bytes", "added",
     "Bytes the last copy added to the repository (after deduplication)."),
)


def _timeout(config: Config) -> float:
    settings = config.sources.get(KIND)
    return settings.timeout_seconds if isinstance(settings, OffsiteSettings) else (
        OffsiteSettings().timeout_seconds)


def _copy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--relist", action="store_true",
                        help="read what is off-site from the repository, not from the state")


def _drill_arguments(parser: argparse.ArgumentParser) -> None:
    # not `kind`: the command line's own name for the source (`drill offsite`)
    parser.add_argument("--kind", dest="only_kind", choices=backup_kinds(),
                        help="only copies of this kind")
    parser.add_argument("--subject", metavar="NAME",
                        help="only this subject (a database's name, ...)")


class OffsiteSource(Source):
    """The off-site restic repository, as an origin of every other kind's backups."""

    kind = KIND
    section = KIND
    holds_backups = False

    def actions(self) -> dict[str, Action]:
        """copy (send what is missing), check (restic check), drill (restore from there)."""
        return {
            "copy": Action(copy_job, "send the backups that are not off-site yet",
                           _copy_arguments, _timeout),
            "check": Action(check_job, "check the off-site repository, reading back part "
                            "of its data", None, _timeout),
            "drill": Action(drill_job, "restore the newest off-site copies into scratch "
                            "and check them, timed", _drill_arguments, _timeout),
        }

    def configured(self, config: Config) -> bool:
        """An [offsite] section is needed."""
        return KIND in config.sources

    def parse_section(self, table: Table) -> OffsiteSettings:
        """The [offsite] table."""
        return parse_settings(table)

    def follow_up(self, config: Config, job: str, outcome: JobOutcome) -> tuple[str, ...]:
        """offsite_copy after a job that wrote a backup of a kind sent off-site."""
        settings = config.sources.get(KIND)
        if not isinstance(settings, OffsiteSettings) or not settings.copy_after_backup:
            return ()
        if outcome.size_bytes is None:
            return ()
        kinds = settings.kinds_to_copy(backup_kinds())
        return ("offsite_copy",) if any(job.startswith(f"{kind}_") for kind in kinds) else ()

    def copies(self, context: JobContext, kind: str | None = None) -> list[RemoteBackup]:
        """The node's backups off-site (of one kind), oldest first; another host's with the
        context's `origin_host` option."""
        from socle_agent.sources import registry

        restic = Restic.open(settings_of(context.config), context.options.get("origin_host"))
        kinds = (kind,) if kind else backup_kinds()
        labels = {k: s.subject_label for k, s in registry().items()}
        found = []
        for snapshot in iter_tagged(restic.snapshots(context), kinds):
            assert snapshot.kind is not None and snapshot.backup_id is not None
            subject = records.subject_from(snapshot.kind, snapshot.backup_id,
                                           dict(snapshot.tags), labels.get(snapshot.kind))
            found.append(RemoteBackup(snapshot.kind, subject, snapshot.backup_id,
                                      snapshot.time, snapshot.id[:8]))
        return found

    @contextlib.contextmanager
    def fetched(self, context: JobContext, kind: str, backup_id: str, report: Report
                ) -> Iterator[Path]:
        """Fetch a backup from off-site, checked (see socle_agent.offsite.fetch)."""
        restic = Restic.open(settings_of(context.config), context.options.get("origin_host"))
        with fetched(context, restic, kind, backup_id, report) as folder:
            yield folder

    def collect(self, config: Config) -> Iterator[Metric]:
        """What the off-site jobs last recorded (none without an [offsite] section)."""
        settings = config.sources.get(KIND)
        if not isinstance(settings, OffsiteSettings):
            return
        section = records.load(config)
        rpo = GaugeMetricFamily("socle_offsite_rpo_target_seconds",
                                "Off-site RPO target per kind of backup.", labels=["kind"])
        for kind, seconds in sorted(settings.rpo(config).items()):
            rpo.add_metric([kind], seconds)
        yield rpo
        yield from _newest(section.get("newest", {}))
        yield from _copies(section.get("copies", {}))
        pending = GaugeMetricFamily("socle_offsite_pending_backups",
                                    "Backups in the catalogue not yet off-site, after the "
                                    "last copy.", labels=["kind"])
        for kind, count in sorted(section.get("pending", {}).items()):
            pending.add_metric([kind], float(count))
        yield pending
        size = GaugeMetricFamily("socle_offsite_repository_bytes",
                                 "Bytes the off-site repository stores (measured by each "
                                 "check, plus what copies added since).")
        if section.get("repository_bytes") is not None:
            size.add_metric([], float(section["repository_bytes"]))
        yield size
        yield from _check(section.get("check"))
        yield from _drills(section.get("drills", {}))


def _newest(newest: dict[str, dict[str, object]]) -> Iterator[Metric]:
    stamp = GaugeMetricFamily("socle_offsite_newest_timestamp_seconds",
                              "End time of the newest backup of each subject off-site.",
                              labels=["kind", "subject"])
    info = GaugeMetricFamily("socle_offsite_newest_backup_info",
                             "The id of the newest backup of each subject off-site.",
                             labels=["kind", "subject", "backup"])
    for record in (newest[key] for key in sorted(newest)):
        kind, subject = str(record["kind"]), str(record["subject"])
        stamp.add_metric([kind, subject], float(str(record["finished"])))
        info.add_metric([kind, subject, str(record["backup"])], 1.0)
    yield stamp
    yield info


def _copies(copies: dict[str, dict[str, object]]) -> Iterator[Metric]:
    for name, key, text in _COPY_GAUGES:
        family = GaugeMetricFamily(name, text, labels=["kind", "subject"])
        for record in (copies[k] for k in sorted(copies)):
            if record.get(key) is not None:
                family.add_metric([str(record["kind"]), str(record["subject"])],
                                  float(str(record[key])))
        yield family


def _check(check: dict[str, object] | None) -> Iterator[Metric]:
    result = GaugeMetricFamily("socle_offsite_check_last_result",
                               "1 if the last check of the off-site repository passed, 0 if not.")
    stamp = GaugeMetricFamily("socle_offsite_check_last_timestamp_seconds",
                              "When the last check of the off-site repository ended.")
    duration = GaugeMetricFamily("socle_offsite_check_last_duration_seconds",
                                 "How long the last check of the off-site repository took.")
    if check:
        result.add_metric([], 1.0 if check.get("result") == "pass" else 0.0)
        stamp.add_metric([], float(str(check.get("finished", 0.0))))
        duration.add_metric([], float(str(check.get("duration", 0.0))))
    yield result
    yield stamp
    yield duration


def _drills(drills: dict[str, dict[str, object]]) -> Iterator[Metric]:
    result = GaugeMetricFamily("socle_offsite_drill_last_result",
                               "1 if the last drill of the newest off-site copy passed, 0 if not.",
                               labels=["kind", "subject"])
    duration = GaugeMetricFamily("socle_offsite_drill_last_duration_seconds",
                                 "How long the last off-site drill took, fetch included: what "
                                 "a restore from off-site takes.", labels=["kind", "subject"])
    stamp = GaugeMetricFamily("socle_offsite_drill_last_timestamp_seconds",
                              "When the last off-site drill ended.", labels=["kind", "subject"])
    for record in (drills[k] for k in sorted(drills)):
        labels = [str(record["kind"]), str(record["subject"])]
        result.add_metric(labels, 1.0 if record.get("result") == "pass" else 0.0)
        duration.add_metric(labels, float(str(record.get("duration", 0.0))))
        stamp.add_metric(labels, float(str(record.get("finished", 0.0))))
    yield result
    yield duration
    yield stamp


SOURCE = OffsiteSource()
