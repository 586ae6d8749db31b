"""Retention applied to the catalogue: delete what the policy no longer keeps, tidy leftovers.

Example:

    deleted = prune_kind(config, "postgres")           # after a successful backup
    would = prune_kind(config, "postgres", dry_run=True)
"""

from __future__ import annotations

import logging

from socle_agent import catalogue
from socle_agent.config import Config
from socle_agent.retention import Item, plan_retention
from socle_agent.state import State, update_state

log = logging.getLogger(__name__)


def prune_kind(config: Config, kind: str, dry_run: bool = False) -> list[catalogue.Backup]:
    """Apply the retention policy to one kind of backup; returns the backups deleted.

    Leftovers are removed first: partial folders, and folders without a manifest (an
    interrupted delete), which are counted. Also records in the state what is retained,
    per kind and per subject, for the metrics.
    """
    orphans = []
    if not dry_run:
        catalogue.remove_partials(config.agent.backup_dir, kind)
        orphans = catalogue.remove_orphans(config.agent.backup_dir, kind)
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
    newest_by_subject: dict[str, float] = {}
    for backup in kept:
        newest_by_subject[backup.manifest.subject] = backup.manifest.finished

    def change(state: State) -> None:
        previous = state.setdefault("backups", {}).get(kind, {})
        state["backups"][kind] = {
            "retained": len(kept),
            "newest_end": kept[-1].manifest.finished if kept else None,
            "total_bytes": sum(b.manifest.size_bytes for b in kept),
            "subjects": newest_by_subject,
            "orphans_removed": previous.get("orphans_removed", 0) + len(orphans),
        }

    update_state(config.agent.state_file, change)
    return doomed
