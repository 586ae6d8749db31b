"""Phase progress: a start line, a time per phase, and which phase failed with what to see."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from operations import phases
from operations.phases import Phase, PhaseRunner


class FakeState:
    """What PhaseRunner reads of pyinfra's state: op_meta and the callback list."""

    def __init__(self) -> None:
        self.op_meta: dict[str, Any] = {}
        self.handlers: list[Any] = []

    def add_callback_handler(self, handler: Any) -> None:
        self.handlers.append(handler)


def runner_of(
    monkeypatch: pytest.MonkeyPatch, ops: dict[str, list[str]]
) -> tuple[PhaseRunner, FakeState, list[str]]:
    """A runner that included one phase per ``deploys/<name>.py`` of ``ops``, each adding
    the operations listed."""
    state = FakeState()

    def include(path: str) -> None:
        for op_hash in ops[path]:
            state.op_meta[op_hash] = SimpleNamespace(names={f"op {op_hash}"})

    monkeypatch.setattr(phases.local, "include", include)
    lines: list[str] = []
    runner = PhaseRunner(state, echo=lines.append)
    for path in ops:
        name = path.removeprefix("deploys/").removesuffix(".py")
        runner.include(Phase(name, path, f"the logs of {name}"))
    return runner, state, lines


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> tuple[PhaseRunner, FakeState, list[str]]:
    return runner_of(
        monkeypatch, {"deploys/a.py": ["a1", "a2"], "deploys/b.py": ["b1"], "deploys/c.py": ["c1"]}
    )


def test_each_phase_prints_its_start_and_its_time(
    runner: tuple[PhaseRunner, FakeState, list[str]],
) -> None:
    phase_runner, state, lines = runner
    assert state.handlers == [phase_runner]

    for op_hash in ("a1", "a2", "b1", "c1"):
        phase_runner.operation_start(state, op_hash)
        phase_runner.operation_end(state, op_hash)

    assert [line.split(" in ")[0] for line in lines] == [
        "==> phase 1/3 a: starting", "==> phase 1/3 a: done",
        "==> phase 2/3 b: starting", "==> phase 2/3 b: done",
        "==> phase 3/3 c: starting", "==> phase 3/3 c: done",
    ]  # fmt: skip
    assert lines[1].endswith(" s")


def test_a_failing_phase_is_named_with_its_operation_and_what_to_look_at(
    runner: tuple[PhaseRunner, FakeState, list[str]],
) -> None:
    phase_runner, state, lines = runner
    node = SimpleNamespace(name="vps")

    phase_runner.operation_start(state, "a1")
    phase_runner.operation_end(state, "a1")
    phase_runner.operation_start(state, "a2")
    phase_runner.operation_host_error(state, node, "a2", retry_count=0, max_retries=1)
    phase_runner.operation_host_error(state, node, "a2", retry_count=1, max_retries=1)

    assert lines[-1] == (
        "==> phase 1/3 a FAILED on vps at 'op a2'; later phases do not run on it. "
        "Look at: the logs of a"
    )
    assert len(lines) == 2


def test_a_phase_without_operations_says_so_in_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    phase_runner, state, lines = runner_of(monkeypatch, {
        "deploys/a.py": ["a1"], "deploys/b.py": [], "deploys/c.py": ["c1"], "deploys/d.py": []})

    for op_hash in ("a1", "c1"):
        phase_runner.operation_start(state, op_hash)
        phase_runner.operation_end(state, op_hash)

    assert [line.split(" in ")[0] for line in lines] == [
        "==> phase 1/4 a: starting", "==> phase 1/4 a: done",
        "==> phase 2/4 b: nothing to do on these hosts",
        "==> phase 3/4 c: starting", "==> phase 3/4 c: done",
        "==> phase 4/4 d: nothing to do on these hosts",
    ]  # fmt: skip


def test_including_them_all_says_how_long_each_took_to_prepare(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = FakeState()
    monkeypatch.setattr(phases.local, "include", lambda path: None)
    lines: list[str] = []

    PhaseRunner(state, echo=lines.append).include_all(
        [Phase(name, f"deploys/{name}.py", "") for name in ("a", "b")]
    )

    assert [line.split(" in ")[0] for line in lines] == [
        "==> phase 1/2 a: prepared", "==> phase 2/2 b: prepared"]


def test_a_phase_refused_while_preparing_is_named_before_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def include(path: str) -> None:
        if path == "deploys/b.py":
            raise ValueError("unconfirmed pin")

    monkeypatch.setattr(phases.local, "include", include)
    lines: list[str] = []

    with pytest.raises(ValueError, match="unconfirmed pin"):
        PhaseRunner(FakeState(), echo=lines.append).include_all(
            [Phase(name, f"deploys/{name}.py", f"the logs of {name}") for name in "abc"]
        )

    assert lines[-1] == (
        "==> phase 2/3 b REFUSED while preparing; nothing was changed on any host. "
        "Look at the error below, and: the logs of b"
    )
