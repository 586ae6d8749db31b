"""Stand-ins for commands the agent asks about k3s (`systemctl is-active`, `k3s --version`).

Only for tests: a small shell script that prints what the real command would print in a
given situation and exits with its status.

Example:

    systemctl = write_command(tmp_path, "systemctl", stdout="active\\n")
    k3s_is_active(systemctl=str(systemctl))  # True
"""

from __future__ import annotations

import shlex
from pathlib import Path


def write_command(
    directory: Path, name: str, stdout: str = "", stderr: str = "", status: int = 0
) -> Path:
    """Write an executable stand-in `directory/name` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(
        "#!/bin/sh\n"
        f"printf '%s' {shlex.quote(stdout)}\n"
        f"printf '%s' {shlex.quote(stderr)} >&2\n"
        f"exit {int(status)}\n"
    )
    path.chmod(0o755)
    return path
