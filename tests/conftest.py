"""Fixtures shared by the whole suite (the test-host harness), and process isolation for
the tests that load pyinfra's command-line package."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.harness.hosts import Harness, leaked_containers

TESTS_DIR = Path(__file__).resolve().parent
# These load `pyinfra_cli` (pyinfra-testing does, and so does reading an inventory file),
# which monkey-patches the whole process with gevent: threads, pipes and signals of the
# agent's tests would then hang. They run in a pytest process of their own instead.
ISOLATED_TEST_FILES = (
    "facts/test_facts.py",
    "operations/test_operations.py",
    "socle_cli/test_wireguard_client.py",
    "socle_cli/test_main.py",
    "socle_cli/test_vps_snapshot_cli.py",
)
ISOLATED_ENV = "SOCLE_ISOLATED_TESTS"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave the isolated files to their own process (see `test_isolated.py`)."""
    if os.environ.get(ISOLATED_ENV) == "1":
        return None
    relative = collection_path.resolve().relative_to(TESTS_DIR).as_posix() if (
        collection_path.resolve().is_relative_to(TESTS_DIR)
    ) else ""
    return True if relative in ISOLATED_TEST_FILES else None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Fail a test that loaded pyinfra_cli in the shared process, before it hangs others."""
    if os.environ.get(ISOLATED_ENV) != "1" and "pyinfra_cli" in sys.modules:
        pytest.fail(
            f"{item.nodeid} loaded pyinfra_cli, which monkey-patches this process with gevent: "
            "add its file to ISOLATED_TEST_FILES in tests/conftest.py",
            pytrace=False,
        )


def run_isolated(test_file: str) -> subprocess.CompletedProcess[str]:
    """Run one of ISOLATED_TEST_FILES in its own pytest process."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/{test_file}"],
        cwd=TESTS_DIR.parent, env={**os.environ, ISOLATED_ENV: "1"},
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip


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
