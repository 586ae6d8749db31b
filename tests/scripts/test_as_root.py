"""The README's commands work as root without sudo, and stop at once where neither is there."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bin_dir() -> Iterator[Path]:
    """A PATH folder another user can read, holding only what the scripts' first lines use."""
    with tempfile.TemporaryDirectory(prefix="socle-path-") as folder:
        Path(folder).chmod(0o755)
        for tool in ("bash", "basename", "dirname"):
            (Path(folder) / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
        yield Path(folder)


def run_as_nobody(script: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["su", "-s", "/bin/bash", "nobody", "-c", f"PATH={path} bash {script} --help"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("script", ["scripts/test.sh", "scripts/demo.sh"])
def test_a_user_without_sudo_is_told_at_once(bin_dir: Path, script: str) -> None:
    result = run_as_nobody(script, str(bin_dir))

    assert result.returncode == 1
    assert "needs root" in result.stderr and "install sudo" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_user_with_sudo_starts_again_under_it(bin_dir: Path) -> None:
    # A stand-in sudo that records how it was called instead of becoming root.
    (bin_dir / "sudo").write_text('#!/bin/bash\necho "sudo $*" >&2\nexit 42\n')
    (bin_dir / "sudo").chmod(0o755)

    result = run_as_nobody("scripts/test.sh", str(bin_dir))

    assert result.returncode == 42
    assert result.stderr.strip().endswith("scripts/test.sh --help")
    assert result.stderr.startswith("sudo -- ")
