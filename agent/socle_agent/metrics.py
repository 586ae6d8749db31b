"""Prometheus metrics of the agent, on a private registry.

Job results are not kept in the process: every job, whether run by the daemon or by an
operator on the command line, records its result in the state file when it ends, and
the collector reads that file at scrape time (re-read only when it changed). So a scrape
is cheap, survives restarts, and shows runs made by hand. Free disk space, and what a
source measures itself (`Source.collect`, such as the size of k3s's datastore), are
measured at scrape time, so they cannot go stale.

Example:

    registry = build_registry(config)
    server, thread = start_server(config.metrics, registry)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from socle_agent import __version__
from socle_agent.config import Config, MetricsSection
from socle_agent.diskguard import disk_usage, existing_ancestor
from socle_agent.sources import registry as source_registry
from socle_agent.state import State, load_state

log = logging.getLogger(__name__)

# The job's name goes in the label `task`, not `job`: Prometheus gives every scraped
# series its own `job` (the scrape job, "socle-agent") and would rename ours
# `exported_job`.
TASK_LABEL = "task"
# (metric name, key in the job's state record, help text)
_JOB_GAUGES = (
    ("socle_job_last_success_timestamp_seconds", "last_success", "End of the last success."),
    ("socle_job_last_run_timestamp_seconds", "last_run", "End of the last run, any result."),
    ("socle_job_last_duration_seconds", "duration", "Duration of the last run."),
    ("socle_job_last_size_bytes", "size", "Bytes written by the last successful run."),
)


class _StateCache:
    """The state file, parsed again only when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._state: State = {}
        self._lock = threading.Lock()

    def get(self) -> State:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                return {}
            stamp = (stat.st_mtime_ns, stat.st_ino)
            if stamp != self._stamp:
                try:
                    self._state = load_state(self.path)
                    self._stamp = stamp
                except (OSError, ValueError) as exc:
                    log.warning("metrics: %s", exc)
            return self._state


class AgentCollector(Collector):
    """Yields every socle metric from the state file, the config and the disks."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.cache = _StateCache(config.agent.state_file)

    def collect(self) -> Iterator[Metric]:
        """Build the metric families for one scrape."""
        state = self.cache.get()
        info = GaugeMetricFamily("socle_agent_info", "The agent's version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        up = GaugeMetricFamily("socle_agent_up", "1 while the agent answers scrapes.")
        up.add_metric([], 1)
        yield up
        yield from self._jobs(state.get("jobs", {}))
        yield from self._backups(state.get("backups", {}))
        yield from self._drills(state.get("drills", {}))
        yield from self._targets()
        yield from self._expected()
        yield from self._disks()
        for source in source_registry().values():
            yield from source.collect(self.config)

    def _jobs(self, jobs: dict[str, Any]) -> Iterator[Metric]:
        for name, key, text in _JOB_GAUGES:
            family = GaugeMetricFamily(name, text, labels=[TASK_LABEL])
            for job, record in sorted(jobs.items()):
                if record.get(key) is not None:
                    family.add_metric([job], float(record[key]))
            yield family
        status = GaugeMetricFamily(
            "socle_job_last_status",
            "1 if the last run succeeded, 0 if it failed.",
            labels=[TASK_LABEL],
        )
        failures = CounterMetricFamily(
            "socle_job_failures",
            "Failed runs since the state file was created.",
            labels=[TASK_LABEL],
        )
        for job, record in sorted(jobs.items()):
            if record.get("status") in ("ok", "failed"):
                status.add_metric([job], 1.0 if record["status"] == "ok" else 0.0)
            failures.add_metric([job], float(record.get("failures_total", 0)))
        yield status
        yield failures

    def _backups(self, backups: dict[str, Any]) -> Iterator[Metric]:
        retained = GaugeMetricFamily(
            "socle_backup_retained", "Backups kept after the last prune.", labels=["kind"]
        )
        newest = GaugeMetricFamily(
            "socle_backup_newest_timestamp_seconds",
            "End time of the newest good backup of each subject (a database, ...).",
            labels=["kind", "subject"],
        )
        orphans = CounterMetricFamily(
            "socle_backup_orphans_removed",
            "Backup folders without a manifest (an interrupted delete) found and removed.",
            labels=["kind"],
        )
        for kind, record in sorted(backups.items()):
            retained.add_metric([kind], float(record.get("retained", 0)))
            for subject, finished in sorted(record.get("subjects", {}).items()):
                newest.add_metric([kind, subject], float(finished))
            orphans.add_metric([kind], float(record.get("orphans_removed", 0)))
        yield retained
        yield newest
        yield orphans

    def _drills(self, drills: dict[str, Any]) -> Iterator[Metric]:
        result = GaugeMetricFamily(
            "socle_drill_last_result", "1 if the last drill passed, 0 if not.", labels=["kind"]
        )
        duration = GaugeMetricFamily(
            "socle_drill_last_duration_seconds", "Duration of the last drill.", labels=["kind"]
        )
        for kind, record in sorted(drills.items()):
            result.add_metric([kind], 1.0 if record.get("result") == "pass" else 0.0)
            if record.get("duration") is not None:
                duration.add_metric([kind], float(record["duration"]))
        yield result
        yield duration

    def _targets(self) -> Iterator[Metric]:
        for name, targets in (
            ("socle_rpo_target_seconds", self.config.drill.rpo_seconds),
            ("socle_rto_target_seconds", self.config.drill.rto_seconds),
        ):
            family = GaugeMetricFamily(name, "Target from the configuration.", labels=["kind"])
            for kind, seconds in sorted(targets.items()):
                family.add_metric([kind], seconds)
            yield family

    def _expected(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "socle_backup_expected",
            "1 for each subject the configuration names; alerts fire while it has no backup.",
            labels=["kind", "subject"],
        )
        for kind, source in sorted(source_registry().items()):
            for subject in source.expected_subjects(self.config):
                family.add_metric([kind, subject], 1)
        yield family

    def _disks(self) -> Iterator[Metric]:
        free = GaugeMetricFamily("socle_disk_free_bytes", "Free bytes.", labels=["mount"])
        size = GaugeMetricFamily("socle_disk_size_bytes", "Filesystem size.", labels=["mount"])
        ratio = GaugeMetricFamily("socle_disk_free_ratio", "Free fraction.", labels=["mount"])
        for mount in watched_mounts(self.config):
            try:
                usage = disk_usage(existing_ancestor(mount))
            except OSError as exc:
                log.warning("metrics: cannot measure %s: %s", mount, exc)
                continue
            free.add_metric([str(mount)], usage.free_bytes)
            size.add_metric([str(mount)], usage.size_bytes)
            ratio.add_metric([str(mount)], usage.free_ratio)
        yield free
        yield size
        yield ratio

def watched_mounts(config: Config) -> tuple[Path, ...]:
    """The configured mounts, or the backup directory when none are configured."""
    return config.disk.mounts or (config.agent.backup_dir,)


def build_registry(config: Config) -> CollectorRegistry:
    """A private registry holding the agent's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(config))
    return registry


def start_server(section: MetricsSection, registry: CollectorRegistry) -> Any:
    """Serve `registry` over HTTP on the configured address; returns (server, thread)."""
    return start_http_server(section.port, addr=section.listen, registry=registry)
