"""socle dr-rehearsal's steps without hosts: which host each command goes to, what is chosen,
what is refused before anything runs. The whole rehearsal on test hosts is
tests/hosts/test_dr_rehearsal.py's."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from socle_cli.dr_rehearsal import (
    OFFSITE,
    Rehearsal,
    RehearsalError,
    RemoteHost,
    check_offsite_target,
    render_report,
)

NODE_READY = {"items": [{"metadata": {"name": "b"},
                         "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]}


@dataclass
class ScriptedHost(RemoteHost):
    """A host whose commands are recorded and answered from `answers` (first match)."""

    answers: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)

    def run(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        out = next((text for words, text in self.answers.items() if words in command), "")
        return subprocess.CompletedProcess(command, 0, out, "")


def copy(kind: str, subject: str, backup_id: str, finished: float, where: list[str]
         ) -> dict[str, Any]:
    return {"id": backup_id, "kind": kind, "subject": subject, "finished": finished,
            "size_bytes": None, "folder": None, "where": where}  # fmt: skip


@pytest.fixture()
def hosts(tmp_path: Path) -> tuple[ScriptedHost, ScriptedHost]:
    listing = [
        copy("postgres", "app", "postgres-app-old", 100.0, ["offsite"]),
        copy("postgres", "app", "postgres-app-new", 200.0, ["offsite"]),
        # B's own first backup, local on B: never the one restored
        copy("postgres", "app", "postgres-app-b-own", 300.0, ["local"]),
        copy("k3s", "datastore", "k3s-new", 150.0, ["offsite"]),
    ]
    a = ScriptedHost(tmp_path / "a.py", "vps-a", {})
    b = ScriptedHost(tmp_path / "b.py", "vps-b", {"offsite": {"destination": "rest"}},
                     answers={"list": json.dumps(listing), "hostname": "b",
                              "get nodes": json.dumps(NODE_READY)})  # fmt: skip
    return a, b


def offsite_rehearsal(a: ScriptedHost, b: ScriptedHost, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> Rehearsal:
    rehearsal = Rehearsal(a, b, log_dir=tmp_path, backups=OFFSITE, echo=lambda line: None)
    monkeypatch.setattr(rehearsal, "_deploy", lambda label: f"deployed ({label})")
    monkeypatch.setattr(rehearsal, "verify", lambda: "Go")
    return rehearsal


def test_an_offsite_rehearsal_never_contacts_a_and_restores_as_copies(
    hosts: tuple[ScriptedHost, ScriptedHost], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = hosts
    rehearsal = offsite_rehearsal(a, b, tmp_path, monkeypatch)

    assert rehearsal.run()

    assert a.commands == []
    assert [s.name for s in rehearsal.steps] == [
        "B provisioned (deploys/all.py)", "newest off-site copies of A",
        "k3s datastore restored on B", "databases restored on B", "B's own backups and drills",
        "socle verify on B"]
    assert "list --offsite --origin-host vps-a --json" in b.commands[0]
    restores = [c for c in b.commands if "restore" in c]
    assert restores == [
        "socle-agent restore k3s --snapshot k3s-new --from offsite --origin-host vps-a",
        "socle-agent restore postgres --backup postgres-app-new --database app --replace "
        "--with-roles --from offsite --origin-host vps-a",
    ]
    assert [c for c in b.commands if c.startswith("socle-agent") and "restore" not in c
            and "list" not in c] == [
        "socle-agent backup postgres", "socle-agent snapshot k3s", "socle-agent drill postgres",
        "socle-agent drill k3s", "socle-agent copy offsite", "socle-agent drill offsite"]
    report = render_report(rehearsal, datetime(2026, 1, 1, tzinfo=UTC), True)
    assert "A's copies in the off-site repository (A not contacted)" in report


def test_nothing_off_site_from_a_fails_the_choice_naming_why(
    hosts: tuple[ScriptedHost, ScriptedHost], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = hosts
    b.answers["list"] = json.dumps([copy("postgres", "app", "b-own", 1.0, ["local"])])
    rehearsal = offsite_rehearsal(a, b, tmp_path, monkeypatch)

    assert not rehearsal.run()

    assert rehearsal.steps[-1].name == "newest off-site copies of A"
    assert "no copy of vps-a off-site" in rehearsal.steps[-1].detail
    assert not any("restore" in c for c in b.commands)


def test_an_offsite_rehearsal_onto_a_b_without_an_offsite_table_is_refused(
    tmp_path: Path,
) -> None:
    b = RemoteHost(tmp_path / "b.py", "vps-b", {})

    with pytest.raises(RehearsalError, match="no offsite table"):
        check_offsite_target(b)


def test_a_local_rehearsal_chooses_the_newest_backup_of_each_subject_on_a(
    hosts: tuple[ScriptedHost, ScriptedHost], tmp_path: Path
) -> None:
    a, b = hosts
    a.answers["list"] = json.dumps([
        copy("postgres", "app", "old", 1.0, ["local"]), copy("postgres", "app", "new", 2.0,
                                                             ["local"]),
        copy("postgres", "billing", "only", 1.5, ["local"]),
    ])  # fmt: skip
    rehearsal = Rehearsal(a, b, log_dir=tmp_path, echo=lambda line: None)

    rehearsal.choose_backups()

    assert [(c["subject"], c["id"]) for c in rehearsal.chosen] == [("app", "new"),
                                                                   ("billing", "only")]
    assert rehearsal.plan()[2][0] == "backups copied from A to B"
