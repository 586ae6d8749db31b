"""The interface every kind of backup implements (PostgreSQL, the k3s datastore, ...).

A source is one object, `SOURCE`, in a module of `socle_agent.sources` (or announced by
another package under the entry-point group `socle_agent.sources`). Everything else is
derived from the registry of sources (`socle_agent.sources.registry`): the job names
(`<kind>_<action>`), the kinds a configuration may name, the command line's verbs
(`socle-agent <action> <kind>`, `restore <kind>`, `list --kind`), the daemon's schedule
and the metrics.

Example: a source with one job, `notes_backup`, and a restore command.

    class NotesSource(Source):
        kind = "notes"

        def actions(self) -> dict[str, Action]:
            return {"backup": Action(self.backup, "copy the notes")}

        def backup(self, context: JobContext) -> JobOutcome:
            with BackupWriter(context, self.kind, "notes", expected_bytes=1000) as out:
                ...
            return JobOutcome(size_bytes=out.backup.manifest.size_bytes)

        def restore(self, context: JobContext, args: argparse.Namespace,
                    report: Callable[[str], None]) -> str:
            ...  # raises RestoreRefused / RestoreError; returns a line for people

    SOURCE = NotesSource()

A source may also keep copies of the other sources' backups somewhere else (the
off-site repository): it is then an origin (`is_origin`), listed by `list --<kind>` and
restored from with `restore <kind> --from <its kind>`. And it may ask for jobs to run
right after another source's job (`follow_up`), such as a copy after each backup.
"""

from __future__ import annotations

import argparse
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from prometheus_client.core import Metric

from socle_agent.base import JobContext, JobOutcome

if TYPE_CHECKING:
    from socle_agent.config import Config, Table

Report = Callable[[str], None]
DEFAULT_JOB_TIMEOUT = 6 * 3600.0


@dataclass(frozen=True)
class Action:
    """One job of a source: `socle-agent <action> <kind>`, job `<kind>_<action>`.

    `add_arguments` adds the command line's options; their values reach the job in
    `context.options`. `timeout` gives the job's deadline for a configuration.
    """

    run: Callable[[JobContext], JobOutcome]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    timeout: Callable[[Config], float] | None = None


@dataclass(frozen=True)
class RemoteBackup:
    """A backup as an origin other than the local catalogue keeps it (see `Source.copies`).

    `reference` is the origin's own name for it (a restic snapshot id, ...).
    """

    kind: str
    subject: str
    backup_id: str
    finished: float
    reference: str


class Source(ABC):
    """A kind of backup: its jobs, its restore, its settings and its own metrics."""

    kind: ClassVar[str]
    # The top-level table of the configuration this source reads with `parse_section`
    # (None: it has none, or the configuration module knows it already).
    section: ClassVar[str | None] = None
    # Whether its jobs write backups into the catalogue: a kind of `list`, `prune`, and
    # of the RPO and RTO targets. An origin that copies the others' backups writes none.
    holds_backups: ClassVar[bool] = True
    # What one subject of this kind is called where copies are labelled (the off-site
    # tags): "database" for PostgreSQL; None when a kind has a single subject.
    subject_label: ClassVar[str | None] = None

    @property
    def resources(self) -> tuple[str, ...]:
        """Resources its jobs and restores hold alone (default: its kind)."""
        return (self.kind,)

    @abstractmethod
    def actions(self) -> dict[str, Action]:
        """Its jobs by action ("backup", "snapshot", "drill", ...)."""

    def configured(self, config: Config) -> bool:
        """Whether the configuration gives this source what its jobs need."""
        return True

    def expected_subjects(self, config: Config) -> tuple[str, ...]:
        """Subjects (databases, ...) the configuration expects a backup of, for the alerts."""
        return ()

    def parse_section(self, table: Table) -> Any:
        """Read this source's own table of the configuration (see `section`)."""
        return None

    def add_restore_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Options of `socle-agent restore <kind>`; only called when `can_restore`."""
        raise NotImplementedError

    @property
    def can_restore(self) -> bool:
        """Whether `socle-agent restore <kind>` exists for this source."""
        return type(self).restore is not Source.restore

    def restore(self, context: JobContext, args: argparse.Namespace, report: Report) -> str:
        """Restore a backup, reporting progress; return a closing line for people.

        Raises a `RestoreError` (RestoreRefused before anything was changed, BackupNotFound,
        RestoreError when a step failed and what was live is left as it was).
        """
        raise NotImplementedError

    def restore_backup_id(self, args: argparse.Namespace) -> str:
        """The backup id `socle-agent restore <kind>` was given (its `--backup` by default)."""
        return str(args.backup)

    def collect(self, config: Config) -> Iterator[Metric]:
        """Metrics only this source knows, measured at scrape time (none by default)."""
        return iter(())

    def follow_up(self, config: Config, job: str, outcome: JobOutcome) -> tuple[str, ...]:
        """Jobs to run right after `job` (any source's) succeeded with `outcome` (none)."""
        return ()

    @property
    def is_origin(self) -> bool:
        """Whether this source keeps copies of other backups that can be restored."""
        return type(self).fetched is not Source.fetched

    def copies(self, context: JobContext, kind: str | None = None) -> list[RemoteBackup]:
        """The backups this origin keeps (of one kind), oldest first."""
        raise NotImplementedError

    @contextlib.contextmanager
    def fetched(self, context: JobContext, kind: str, backup_id: str, report: Report
                ) -> Iterator[Path]:
        """Fetch one backup into a scratch catalogue, checked against its manifest.

        Yields the catalogue's folder (`<folder>/<kind>/<backup_id>/`), to be used as
        `agent.backup_dir` by the source's own restore or drill; removes it afterwards.
        Raises BackupNotFound, RestoreRefused (damaged, or it does not fit) or an
        AgentError.
        """
        raise NotImplementedError
        yield Path()
