"""Make real SOPS files for tests, encrypted for a fresh age identity."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pyrage import x25519

from socle.sops_secrets import sops_executable


def write_sops_file(folder: Path, values: dict[str, str]) -> tuple[Path, Path]:
    """Encrypt ``values`` into ``folder/secrets.sops.yaml``; return it and the age key file.

    The clear file is removed at once; point ``SOPS_AGE_KEY_FILE`` at the key to decrypt.
    sops runs in ``folder`` so that the repository's own ``.sops.yaml`` (the operators'
    recipients) does not apply to test files.
    """
    identity = x25519.Identity.generate()
    key_file = folder / "operator.age-key"
    key_file.write_text(str(identity) + "\n")
    key_file.chmod(0o600)
    plain = folder / "secrets.yaml"
    # JSON strings are YAML scalars: values with newlines (an SSH key) survive as they are.
    plain.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in values.items()))
    encrypted = subprocess.run(
        [sops_executable(), "encrypt", "--age", str(identity.to_public()), str(plain)],
        capture_output=True, text=True, check=True, cwd=folder,
        env={**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"},
    ).stdout  # fmt: skip
    plain.unlink()
    sops_file = folder / "secrets.sops.yaml"
    sops_file.write_text(encrypted)
    return sops_file, key_file
