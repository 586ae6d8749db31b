"""The tests that load pyinfra's command-line package, each run in a process of its own."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ISOLATED_TEST_FILES, run_isolated


@pytest.mark.parametrize("test_file", ISOLATED_TEST_FILES)
def test_isolated_file_passes_in_its_own_process(test_file: str) -> None:
    proc = run_isolated(test_file)

    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", summary), summary
