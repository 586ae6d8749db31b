"""Every restic call of the agent: the node's destination applied, a deadline each.

restic runs as docs/offsite.md says: the environment file's `RESTIC_*` and `AWS_*`
variables in its environment (the password comes from `RESTIC_PASSWORD_FILE`, never a
command line), `-o` and `--limit-upload` from the file, `--host` on every listing and
backup. Each call runs under the job's rules (`socle_agent.programs`: its own process
group, killed when the agent stops) with a deadline of its own, never past the job's:
restic retries an unreachable backend for minutes, and a call that does not end in time
is stopped and reported as such. What restic says is passed on with the destination's
credentials hidden.

Example:

    restic = Restic.open(settings)
    for snapshot in restic.snapshots(context):
        print(snapshot.kind, snapshot.backup_id)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from socle_agent.base import AgentError, DeadlineExceeded, JobContext
from socle_agent.offsite.environment import Destination, read_destination
from socle_agent.offsite.settings import OffsiteSettings
from socle_agent.programs import ProgramFailed, run_program

log = logging.getLogger(__name__)
# restic's exit status when it saved a snapshot but could not read every file
INCOMPLETE = 3
OUTPUT_LIMIT = 256 << 20
# the problems of a check kept for its report (a damaged repository may list many)
CHECK_LINES = 2000
# the lines of restic's error output a failure message quotes
SAID_LINES = 4
_RETRY_DELAY = re.compile(r"retrying after [0-9.]+[a-zµ]*s\b")
# Kept from the caller's environment; everything else restic reads comes from the file.
KEPT_VARIABLES = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ")
_HEX_ID = re.compile(r"\b[0-9a-f]{64}\b")
_PACK_WORDS = re.compile(r"\bpack\b|Pack ID|packs?:", re.IGNORECASE)


class OffsiteError(AgentError):
    """An off-site operation failed; the message says what restic said, credentials hidden."""


@dataclass(frozen=True)
class Snapshot:
    """One restic snapshot of a backup folder, as the agent tagged it."""

    id: str
    time: float
    paths: tuple[str, ...]
    tags: Mapping[str, str]

    @property
    def kind(self) -> str | None:
        """The `kind=` tag."""
        return self.tags.get("kind")

    @property
    def backup_id(self) -> str | None:
        """The `backup=` tag."""
        return self.tags.get("backup")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        """Read one entry of `restic snapshots --json`."""
        tags: dict[str, str] = {}
        for tag in data.get("tags") or ():
            name, equals, value = str(tag).partition("=")
            if equals and name not in tags:
                tags[name] = value
        return cls(str(data["id"]), parse_time(str(data["time"])),
                   tuple(str(p) for p in data.get("paths") or ()), tags)


@dataclass(frozen=True)
class BackupSummary:
    """What `restic backup` said at its end."""

    snapshot_id: str
    data_added: int
    bytes_processed: int
    incomplete: bool = False


@dataclass(frozen=True)
class CheckResult:
    """The verdict of `restic check`: its problems and the damaged pack files they name."""

    passed: bool
    problems: tuple[str, ...] = ()
    damaged_packs: tuple[str, ...] = ()


@dataclass
class _Memory:
    """A program's standard output, kept in memory (bounded)."""

    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > OUTPUT_LIMIT:
            raise OffsiteError(f"restic printed more than {OUTPUT_LIMIT} bytes; stopped")
        self.chunks.append(bytes(data))

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


@dataclass
class _JsonMessages:
    """`restic backup --json` output: its status lines dropped as they come, the rest kept."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    pending: bytes = b""

    def write(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("message_type") != "status":
            self.kept.append(message)

    def messages(self) -> list[dict[str, Any]]:
        if self.pending:
            self._line(self.pending)
            self.pending = b""
        return self.kept


class _Said:
    """What restic said on its error output, for a message: its first problem, and its
    last lines, each once (a retried request repeats the same line with a new delay)."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.last: deque[str] = deque(maxlen=SAID_LINES)

    def add(self, line: str) -> None:
        if not line or _progress(line):
            return
        line = _RETRY_DELAY.sub("retrying", line)
        if self.first is None:
            self.first = line
        if line in self.last:
            self.last.remove(line)
        self.last.append(line)

    def summary(self, lead: str) -> str:
        lines = list(self.last)
        if self.first is not None and self.first not in lines:
            lines = [self.first, "...", *lines]
        return lead + " | ".join(lines) if lines else ""


def parse_time(text: str) -> float:
    """A restic time (RFC 3339, nanoseconds maybe) as a Unix time.

    >>> parse_time("2025-01-31T02:00:00.123456789+01:00")
    1738285200.123456
    """
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        raise ValueError(f"not a restic time: {text!r}")
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return dt.datetime.fromisoformat(match.group(1) + fraction + zone).timestamp()


def restic_time(stamp: float) -> str:
    """A Unix time as `restic backup --time` reads it (the node's local time)."""
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def damaged_packs(lines: list[str]) -> tuple[str, ...]:
    """The pack files restic's check complains about, as named in the repository.

    >>> damaged_packs(["Pack ID does not match, want " + "ab" * 32 + ", got " + "cd" * 32])
    ('data/ab/abababababababababababababababababababababababababababababababab',)
    """
    found: list[str] = []
    for line in lines:
        if not _PACK_WORDS.search(line):
            continue
        ids = _HEX_ID.findall(line)
        if "want" in line and ids:
            # "Pack ID does not match, want <name>, got <hash of what is there>"
            ids = ids[:1]
        for pack in ids:
            name = f"data/{pack[:2]}/{pack}"
            if name not in found:
                found.append(name)
    return tuple(found)


class Restic:
    """restic against the node's off-site repository (see the module docstring)."""

    def __init__(self, settings: OffsiteSettings, destination: Destination) -> None:
        self.settings = settings
        self.destination = destination

    @classmethod
    def open(cls, settings: OffsiteSettings, host: str | None = None) -> Restic:
        """restic with the node's destination; raises OffsiteNotSetUp without one.

        `host` reads another host's snapshots (its `--host`) instead of the node's own.
        """
        destination = read_destination(settings.environment_file)
        return cls(settings, replace(destination, host=host) if host else destination)

    @property
    def host(self) -> str:
        """The host name the node's snapshots carry (`--host`)."""
        return self.destination.host

    def environment(self) -> dict[str, str]:
        """restic's environment: a few of the caller's variables and the file's."""
        env = {name: os.environ[name] for name in KEPT_VARIABLES if name in os.environ}
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env.update(self.destination.variables)
        return env

    def run(
        self,
        context: JobContext,
        args: list[str],
        *,
        timeout: float,
        stdout: Any = None,
        on_line: Callable[[str], None] | None = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> int:
        """Run `restic ARGS` within `timeout` seconds (and the job's deadline).

        Returns restic's exit status: 0, or one of `ok_statuses`; raises OffsiteError
        for any other, and when the call ran past its own deadline.
        """
        what = f"restic {args[0]}"
        argv = [self.settings.restic, *self.destination.global_arguments(), *args]
        call = replace(context, deadline=min(context.deadline, time.monotonic() + timeout))
        said = _Said()

        def line(text: str) -> None:
            shown = self.destination.redact(text)
            log.debug("%s: %s", what, shown)
            said.add(shown)
            if on_line is not None:
                on_line(shown)

        try:
            run_program(argv, call, env=self.environment(), stdout=stdout, on_line=line)
        except DeadlineExceeded:
            if time.monotonic() > context.deadline:
                raise
            raise OffsiteError(
                f"{what} did not finish within {timeout:.0f} s and was stopped (is the "
                f"off-site host reachable?){said.summary('; it said: ')}") from None
        except ProgramFailed as exc:
            if exc.status in ok_statuses:
                return exc.status
            raise OffsiteError(
                f"{what} failed (exit status {exc.status}){said.summary(': ')}") from None
        except OSError as exc:
            raise OffsiteError(f"{what} could not run: {exc}") from None
        return 0

    def snapshots(self, context: JobContext, tags: Mapping[str, str] | None = None
                  ) -> list[Snapshot]:
        """The node's snapshots (with all of `tags`), oldest first."""
        args = ["snapshots", "--json", "--host", self.host]
        if tags:
            args += ["--tag", ",".join(f"{k}={v}" for k, v in tags.items())]
        out = _Memory()
        self.run(context, args, timeout=self.settings.call_timeout_seconds, stdout=out)
        try:
            listed = json.loads(out.text() or "[]")
            snapshots = [Snapshot.from_json(item) for item in listed or ()]
        except (ValueError, KeyError, TypeError) as exc:
            raise OffsiteError(f"restic snapshots printed what is not its JSON: {exc}") from None
        return sorted(snapshots, key=lambda s: (s.time, s.id))

    def backup(self, context: JobContext, folder: Path, tags: Mapping[str, str],
               when: float, timeout: float) -> BackupSummary:
        """One snapshot of `folder`, tagged, dated `when` (the backup's own time)."""
        args = ["backup", "--json", "--host", self.host, "--time", restic_time(when)]
        for name, value in tags.items():
            args += ["--tag", f"{name}={value}"]
        out = _JsonMessages()
        status = self.run(context, [*args, str(folder)], timeout=timeout, stdout=out,
                          ok_statuses=(INCOMPLETE,))
        summary = next((m for m in out.messages() if m.get("message_type") == "summary"), None)
        if summary is None or not summary.get("snapshot_id"):
            raise OffsiteError(f"restic backup of {folder} ended without saying which "
                               "snapshot it saved")
        return BackupSummary(str(summary["snapshot_id"]), int(summary.get("data_added", 0)),
                             int(summary.get("total_bytes_processed", 0)),
                             incomplete=status == INCOMPLETE)

    def dump(self, context: JobContext, snapshot: str, path: str) -> bytes:
        """One file of a snapshot, whole (a manifest: small)."""
        out = _Memory()
        self.run(context, ["dump", snapshot, path], timeout=self.settings.call_timeout_seconds,
                 stdout=out)
        return b"".join(out.chunks)

    def restore(self, context: JobContext, snapshot: str, target: Path, timeout: float,
                on_line: Callable[[str], None] | None = None) -> None:
        """Write a snapshot's files under `target` (each at its full path there)."""
        self.run(context, ["restore", snapshot, "--target", str(target)], timeout=timeout,
                 on_line=on_line)

    def unlock(self, context: JobContext) -> None:
        """Remove stale locks (a restic that was stopped leaves its own behind)."""
        self.run(context, ["unlock"], timeout=self.settings.call_timeout_seconds)

    def check(self, context: JobContext, read_data_percent: float) -> CheckResult:
        """`restic check --read-data-subset=N%`; a damaged repository is a result, not an
        error (an unreachable one, or one that cannot be opened, is)."""
        said: deque[str] = deque(maxlen=CHECK_LINES)

        def keep(line: str) -> None:
            if line and not _progress(line):
                said.append(line)

        status = self.run(context, ["check", f"--read-data-subset={read_data_percent:g}%"],
                          timeout=self.settings.timeout_seconds, on_line=keep,
                          ok_statuses=(1,))
        if status == 0:
            return CheckResult(True)
        problems = tuple(said)
        if not any("repository contains errors" in line for line in problems):
            # not a verdict on the data: the repository could not be checked at all
            raise OffsiteError("restic check failed: " + "\n".join(problems[-20:]))
        return CheckResult(False, problems, damaged_packs(list(problems)))

    def repository_bytes(self, context: JobContext) -> int:
        """The bytes the whole repository stores (`restic stats --mode raw-data`)."""
        out = _Memory()
        self.run(context, ["stats", "--json", "--mode", "raw-data"],
                 timeout=self.settings.call_timeout_seconds, stdout=out)
        try:
            return int(json.loads(out.text())["total_size"])
        except (ValueError, KeyError, TypeError) as exc:
            raise OffsiteError(f"restic stats printed what is not its JSON: {exc}") from None


def _progress(line: str) -> bool:
    return line.startswith("[") or line.startswith("using temporary cache") or line in (
        "create exclusive lock for repository", "load indexes", "check all packs",
        "check snapshots, trees and blobs", "no errors were found") or line.startswith("read ")


def iter_tagged(snapshots: list[Snapshot], kinds: tuple[str, ...]) -> Iterator[Snapshot]:
    """The snapshots the agent made of backups of `kinds` (a `kind=` and `backup=` tag)."""
    for snapshot in snapshots:
        if snapshot.kind in kinds and snapshot.backup_id:
            yield snapshot
