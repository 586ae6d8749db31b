"""Run deploy files as numbered phases: a line when each starts, its time when it ends,
and, when one fails, which phase it was and what to look at.

pyinfra first collects every operation of every phase, then runs them in order. The
operations each phase adds are recorded while its file is included, and a state callback
turns pyinfra's operation events into phase events.

Example, in ``deploys/all.py``::

    phases = PhaseRunner(state)
    phases.include_all([Phase("k3s", "deploys/k3s.py", "journalctl -u k3s on the node")])
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyinfra import local
from pyinfra.api.state import BaseStateCallback


@dataclass(frozen=True)
class Phase:
    """One phase: its name, its deploy file, and what to look at when it fails."""

    name: str
    deploy: str
    look_at: str


class PhaseRunner(BaseStateCallback):
    """Includes phases in order and reports their progress while pyinfra runs them.

    pyinfra declares its callbacks static; these are bound methods called with the same
    arguments, hence the ``override`` ignores.
    """

    def __init__(self, state: Any, echo: Callable[[str], None] | None = None) -> None:
        self.state = state
        self.phases: list[Phase] = []
        self.phase_of: dict[str, int] = {}
        self.last_op: dict[int, str] = {}
        self.started: dict[int, float] = {}
        self.failed: set[int] = set()
        self.said_empty: set[int] = set()
        self.total = 0
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        state.add_callback_handler(self)

    def label(self, index: int) -> str:
        """``phase 3/7 k3s`` for the phase at ``index``."""
        total = self.total or len(self.phases)
        return f"phase {index + 1}/{total} {self.phases[index].name}"

    def include_all(self, phases: Sequence[Phase]) -> None:
        """Include ``phases`` in order, each saying how long its preparation took."""
        self.total = len(self.phases) + len(phases)
        for phase in phases:
            self.include(phase)

    def include(self, phase: Phase) -> None:
        """Collect ``phase``'s operations (``local.include``) and remember which they are.

        Preparing runs the deploy file: its checks, the facts it reads first, the secrets
        it decrypts. With ``include_all``, the time that took is said.
        """
        before = set(self.state.op_meta)
        index = len(self.phases)
        self.phases.append(phase)
        started = time.monotonic()
        try:
            local.include(phase.deploy)
        except Exception:
            # Every file is prepared before any operation runs: no host was changed.
            self.echo(f"==> {self.label(index)} REFUSED while preparing; nothing was changed "
                      f"on any host. Look at the error below, and: {phase.look_at}")
            raise
        if self.total:
            self.echo(f"==> {self.label(index)}: prepared in {time.monotonic() - started:.1f} s")
        for op_hash in self.state.op_meta:
            if op_hash not in before:
                self.phase_of[op_hash] = index
                self.last_op[index] = op_hash

    def _say_empty_phases(self, before: int) -> None:
        """Say which phases before ``before`` had no operation on any host."""
        for index in range(before):
            if index not in self.last_op and index not in self.said_empty:
                self.said_empty.add(index)
                self.echo(f"==> {self.label(index)}: nothing to do on these hosts")

    def operation_start(self, state: Any, op_hash: str) -> None:  # type: ignore[override]
        """Print the start line of a phase at its first operation."""
        index = self.phase_of.get(op_hash)
        if index is not None and index not in self.started:
            self._say_empty_phases(index)
            self.started[index] = time.monotonic()
            self.echo(f"==> {self.label(index)}: starting")

    def operation_host_error(  # type: ignore[override]
        self, state: Any, host: Any, op_hash: str, retry_count: int = 0, max_retries: int = 0
    ) -> None:
        """Say which phase failed, on which host and operation, and what to look at."""
        index = self.phase_of.get(op_hash)
        if index is None or retry_count < max_retries:
            return
        self.failed.add(index)
        names = ", ".join(sorted(state.op_meta[op_hash].names)) or op_hash
        self.echo(
            f"==> {self.label(index)} FAILED on {host.name} at {names!r}; "
            f"later phases do not run on it. Look at: {self.phases[index].look_at}"
        )

    def operation_end(self, state: Any, op_hash: str) -> None:  # type: ignore[override]
        """Print a phase's time after its last operation."""
        index = self.phase_of.get(op_hash)
        if index is None or self.last_op.get(index) != op_hash or index not in self.started:
            return
        seconds = time.monotonic() - self.started[index]
        outcome = "failed" if index in self.failed else "done"
        self.echo(f"==> {self.label(index)}: {outcome} in {seconds:.1f} s")
        if index == max(self.last_op):
            self._say_empty_phases(len(self.phases))
