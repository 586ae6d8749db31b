"""The harness' own SSH key pair, made once and kept in the harness' cache directory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.harness.errors import HarnessError


def ensure_key_pair(cache_dir: Path) -> Path:
    """Return the private key path, creating an ed25519 pair on first use."""
    key = cache_dir / "id_ed25519"
    if key.exists() and key.with_suffix(".pub").exists():
        return key
    if shutil.which("ssh-keygen") is None:
        raise HarnessError("ssh-keygen is missing: install openssh-client")
    cache_dir.mkdir(parents=True, exist_ok=True)
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "socle-test-harness", "-f", str(key)],
        check=True,
    )
    return key
