"""A test host set up as the off-site machine: where a node's restic copies go.

One account, ``socle-offsite``, owns ``/srv/socle-restic``. Two ways in for the node,
both append-only whatever the node asks:

- restic's REST protocol: ``rclone serve restic --append-only`` on port 8000, a login
  per node in an htpasswd file (folder ``rest``);
- SSH: the node's key may only run ``rclone serve restic --stdio --append-only`` on the
  folder ``sftp`` (``restrict,command=...`` in authorized_keys), so an SFTP session or a
  shell command gets that server instead.

The operator's key may only run ``sftp-server``: full rights on the files, for the
prune. docs/offsite.md shows the same set-up for a real second host.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.hosts import TestHost

ACCOUNT = "socle-offsite"
ROOT = "/srv/socle-restic"
REST_PORT = 8000
REST_UNIT = f"""[Unit]
Description=restic REST server for socle's off-site copies, append-only
After=network-online.target

[Service]
User={ACCOUNT}
UMask=0077
ExecStart=/usr/bin/rclone serve restic --append-only --htpasswd /etc/socle-offsite/htpasswd \\
    --addr 0.0.0.0:{REST_PORT} {ROOT}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class OffsiteStore:
    """The store host and how each side reaches it."""

    host: TestHost
    host_key: str
    operator_key: Path

    def operator_sftp_command(self) -> str:
        """The ssh command restic's sftp backend runs for the operator (``-s sftp``)."""
        return (
            f"ssh -i {self.operator_key} -o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR "
            f"{ACCOUNT}@{self.host.address} -s sftp"
        )

    def files_holding(self, marker: str) -> list[str]:
        """Files under the repositories that hold ``marker`` in clear."""
        found = self.host.exec(f"grep -rl {shlex.quote(marker)} {ROOT} || true")
        return found.stdout.split()

    def file_digests(self, folder: str) -> str:
        """``sha256sum`` of every file of one repository folder, sorted."""
        return self.host.exec(
            f"cd {ROOT}/{folder} && find . -type f -print0 | sort -z | xargs -0 sha256sum"
        ).stdout


def new_key_pair(folder: Path, name: str) -> tuple[Path, str]:
    """Make an ed25519 key pair: the private key file and the public key line."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)  # fmt: skip
    return key, key.with_suffix(".pub").read_text().strip()


def set_up_store(
    store: TestHost, node_public_key: str, rest_user: str, rest_password: str, workdir: Path
) -> OffsiteStore:
    """Make ``store`` the off-site machine for one node; return how to reach it."""
    operator_key, operator_public_key = new_key_pair(workdir, "operator")
    store.exec("command -v rclone >/dev/null || { apt-get update -q && "
               "DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone; }")  # fmt: skip
    store.exec(
        f"id {ACCOUNT} >/dev/null 2>&1 || useradd --create-home --shell /bin/sh {ACCOUNT}; "
        f"usermod -p '*' {ACCOUNT}; install -d -o {ACCOUNT} -g {ACCOUNT} -m 0700 {ROOT} "
        f"{ROOT}/rest {ROOT}/sftp; install -d -o {ACCOUNT} -g {ACCOUNT} -m 0700 "
        f"/home/{ACCOUNT}/.ssh; install -d -m 0755 /etc/socle-offsite"
    )
    forced = f"umask 077; exec rclone serve restic --stdio --append-only {ROOT}/sftp"
    authorized = (
        f'restrict,command="{forced}" {node_public_key}\n'
        f'restrict,command="/usr/lib/openssh/sftp-server" {operator_public_key}\n'
    )
    store.exec(
        [
            "sh",
            "-c",
            f"umask 077; cat > /home/{ACCOUNT}/.ssh/authorized_keys "
            f"<<'EOF'\n{authorized}EOF\nchown {ACCOUNT}: /home/{ACCOUNT}/.ssh/authorized_keys",
        ]
    )
    store.exec(["sh", "-c", 'printf "%s:%s\\n" "$1" "$(printf "%s\\n" "$2" | '
                'openssl passwd -apr1 -stdin)" > /etc/socle-offsite/htpasswd',
                "sh", rest_user, rest_password])  # fmt: skip
    store.exec(f"chgrp {ACCOUNT} /etc/socle-offsite/htpasswd && "
               "chmod 0640 /etc/socle-offsite/htpasswd")  # fmt: skip
    store.exec(["sh", "-c", f"cat > /etc/systemd/system/socle-offsite-rest.service "
                f"<<'EOF'\n{REST_UNIT}EOF\nsystemctl daemon-reload && "
                "systemctl enable --now socle-offsite-rest.service"])  # fmt: skip
    host_key = store.exec("cut -d ' ' -f 1,2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
    return OffsiteStore(store, host_key, operator_key)
