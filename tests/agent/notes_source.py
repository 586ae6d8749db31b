"""A third kind of backup for the tests only, never shipped: a folder of notes.

It shows that a source is one module and nothing else: it is announced as a plug-in
(an entry point in the group `socle_agent.sources`, see `install_notes_plugin`), and the
agent then schedules `notes_backup`, offers `socle-agent backup notes`, `drill notes`,
`restore notes`, `list --kind notes`, accepts `[notes]` and RPO/RTO targets for `notes`
in its configuration, and exports its metrics, with no file of the agent changed.

`hang = true` in `[notes]` makes the backup block forever without showing progress, as a
call without a timeout would: the daemon's watchdog must notice.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from socle_agent import catalogue
from socle_agent.base import (
    DrillFailed,
    DrillRecord,
    JobContext,
    JobOutcome,
    RestoreRefused,
)
from socle_agent.config import Config, Table
from socle_agent.manifest import verify_files
from socle_agent.pruning import prune_kind
from socle_agent.source import Action, Report, Source
from socle_agent.writer import BackupWriter

KIND = "notes"


@dataclass(frozen=True)
class NotesSettings:
    """The `[notes]` table."""

    folder: Path
    hang: bool = False


class NotesSource(Source):
    """Backs up the files of one folder."""

    kind = KIND
    section = "notes"

    def parse_section(self, table: Table) -> NotesSettings:
        settings = NotesSettings(folder=table.path("folder"), hang=table.boolean("hang", False))
        table.finish()
        return settings

    def configured(self, config: Config) -> bool:
        return KIND in config.sources

    def expected_subjects(self, config: Config) -> tuple[str, ...]:
        return (KIND,) if self.configured(config) else ()

    def actions(self) -> dict[str, Action]:
        return {
            "backup": Action(self.backup, "copy the notes", self._backup_arguments),
            "drill": Action(self.drill, "check the newest copy of the notes"),
        }

    @staticmethod
    def _backup_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--only", metavar="NAME", help="only this note")

    def backup(self, context: JobContext) -> JobOutcome:
        settings: NotesSettings = context.config.sources[KIND]
        if settings.hang:
            threading.Event().wait()
        names = sorted(p.name for p in settings.folder.iterdir() if p.is_file())
        if context.options.get("only"):
            names = [n for n in names if n == context.options["only"]]
        total = sum((settings.folder / n).stat().st_size for n in names)
        with BackupWriter(context.config.agent.backup_dir, KIND, KIND,
                          state_file=context.config.agent.state_file) as writer:
            writer.guard(context.config.disk, {"the notes": total})
            for name in names:
                context.check(f"copying {name}")
                with writer.file(f"notes/{name}") as out:
                    out.write((settings.folder / name).read_bytes())
            backup = writer.commit(format="files", details={"count": len(names)})
        prune_kind(context.config, KIND)
        return JobOutcome(size_bytes=backup.manifest.size_bytes,
                          summary=f"{backup.manifest.id} ({len(names)} notes)")

    def drill(self, context: JobContext) -> JobOutcome:
        newest = catalogue.newest(context.config.agent.backup_dir, KIND)
        if newest is None:
            raise DrillFailed(KIND, "no copy of the notes", 0.0)
        problems = verify_files(newest.path, newest.manifest)
        if problems:
            raise DrillFailed(KIND, "; ".join(problems), 0.0)
        catalogue.mark_verified(newest)
        return JobOutcome(summary=f"{newest.manifest.id} passed",
                          drill=DrillRecord(KIND, True, 0.0))

    def add_restore_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--backup", required=True, metavar="ID")
        parser.add_argument("--into", required=True, type=Path, metavar="FOLDER")

    def restore(self, context: JobContext, args: argparse.Namespace, report: Report) -> str:
        backup = catalogue.find_backup(context.config.agent.backup_dir, args.backup, KIND)
        if args.into.exists():
            raise RestoreRefused(f"{args.into} exists; refusing to write into it")
        problems = verify_files(backup.path, backup.manifest)
        if problems:
            raise RestoreRefused("damaged: " + "; ".join(problems))
        staging = args.into.with_name(args.into.name + ".partial")
        shutil.copytree(backup.path / "notes", staging)
        os.rename(staging, args.into)
        report(f"copied {len(backup.manifest.files)} notes")
        return f"restored {backup.manifest.id} into {args.into}"

    def collect(self, config: Config) -> Iterator[Metric]:
        family = GaugeMetricFamily("socle_notes_files", "Notes in the folder.")
        settings: Any = config.sources.get(KIND)
        if settings is not None and settings.folder.is_dir():
            family.add_metric([], len([p for p in settings.folder.iterdir() if p.is_file()]))
        yield family


SOURCE = NotesSource()


def install_notes_plugin(site: Path) -> Path:
    """Announce the notes source in `site` as an installed plug-in would; returns `site`.

    Put `site` on sys.path (and on PYTHONPATH for a `socle-agent` process) to load it.
    """
    info = site / "socle_notes_plugin-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: socle-notes-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[socle_agent.sources]\nnotes = tests.agent.notes_source:SOURCE\n")
    return site
