"""Fixtures shared by the whole suite: the test-host harness."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from tests.harness.hosts import Harness, leaked_containers


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # pytest tears fixtures down on KeyboardInterrupt, so a CI timeout or `kill` still
    # removes every test host.
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    """The session's test-host harness; every host it started is removed at the end.

    A harness that cannot start hosts fails the tests that need it: host tests are never
    skipped for want of an engine.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    test_harness = Harness()
    try:
        yield test_harness
    finally:
        test_harness.close()
        signal.signal(signal.SIGTERM, previous)
        leaked = leaked_containers(test_harness.client, test_harness.run_id)
        assert not leaked, f"test hosts left behind: {leaked}"
