"""The `[offsite]` table of the agent's configuration: how the off-site jobs run.

Where the repository is and its credentials are not here: deploys/offsite.py writes them
in root-only files on the node (docs/offsite.md), and `environment_file` names the one
that holds the rest.

Example:

    [offsite]
    check_read_data_percent = 5
    rpo_seconds = { postgres = 93600, k3s = 25200 }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from socle_agent.config import Config, Table

KIND = "offsite"
DEFAULT_ENVIRONMENT_FILE = Path("/etc/socle/offsite/env")


@dataclass(frozen=True)
class OffsiteSettings:
    """The checked `[offsite]` table (see agent.example.toml for each key)."""

    environment_file: Path = DEFAULT_ENVIRONMENT_FILE
    restic: str = "restic"
    kinds: tuple[str, ...] = ()
    copy_after_backup: bool = True
    relist_seconds: float = 86400.0
    check_read_data_percent: float = 5.0
    rpo_seconds: Mapping[str, float] = field(default_factory=dict)
    timeout_seconds: float = 6 * 3600.0
    call_timeout_seconds: float = 300.0
    transfer_timeout_seconds: float = 3 * 3600.0

    def kinds_to_copy(self, holding: tuple[str, ...]) -> tuple[str, ...]:
        """The kinds sent off-site: those named, or every kind that holds backups."""
        return tuple(kind for kind in holding if not self.kinds or kind in self.kinds)

    def rpo(self, config: Config) -> dict[str, float]:
        """Off-site RPO per kind: this table's, else the kind's own (`drill.rpo_seconds`)."""
        targets = dict(config.drill.rpo_seconds)
        targets.update(self.rpo_seconds)
        return {kind: targets[kind] for kind in self.kinds_to_copy(tuple(targets))}


def parse_settings(table: Table) -> OffsiteSettings:
    """Read the `[offsite]` table, naming each key at fault."""
    from socle_agent.config import backup_kinds, kind_targets

    default = OffsiteSettings()
    kinds = backup_kinds()
    named = table.strings("kinds")
    for kind in named:
        if kind not in kinds:
            table.problem("kinds", f"unknown backup kind {kind!r}; expected some of "
                                   f"{', '.join(kinds)}")
    rpo = kind_targets(table.table("rpo_seconds"))
    percent = table.number("check_read_data_percent", default.check_read_data_percent,
                           maximum=100.0)
    if isinstance(percent, float) and percent <= 0:
        table.problem("check_read_data_percent", "expected a percentage above 0, up to 100")
    settings = OffsiteSettings(
        environment_file=table.path("environment_file", default.environment_file),
        restic=table.string("restic", default.restic),
        kinds=named,
        copy_after_backup=table.boolean("copy_after_backup", default.copy_after_backup),
        relist_seconds=table.duration("relist_seconds", default.relist_seconds),
        check_read_data_percent=percent,
        rpo_seconds=rpo,
        timeout_seconds=table.duration("timeout_seconds", default.timeout_seconds),
        call_timeout_seconds=table.duration("call_timeout_seconds",
                                            default.call_timeout_seconds),
        transfer_timeout_seconds=table.duration("transfer_timeout_seconds",
                                                default.transfer_timeout_seconds),
    )
    if not settings.restic:
        table.problem("restic", "expected the restic program's name or path")
    table.finish()
    return settings


def settings_of(config: Config) -> OffsiteSettings:
    """The `[offsite]` table of `config`; raises OffsiteNotSetUp when there is none."""
    from socle_agent.offsite.environment import OffsiteNotSetUp

    settings = config.sources.get(KIND)
    if not isinstance(settings, OffsiteSettings):
        raise OffsiteNotSetUp("there is no [offsite] section in the agent's configuration")
    return settings
