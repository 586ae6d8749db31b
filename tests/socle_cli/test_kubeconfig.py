"""`socle kubeconfig`: k3s's admin kubeconfig rewritten for the VPN, written privately."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from socle_cli.kubeconfig import KubeconfigError, admin_kubeconfig
from socle_cli.private_files import write_private

NODE_CONFIG = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://127.0.0.1:6443
  name: default
contexts:
- context: {cluster: default, user: default}
  name: default
current-context: default
kind: Config
users:
- name: default
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
"""


def test_server_is_the_vpn_address_and_names_the_host() -> None:
    config = yaml.safe_load(admin_kubeconfig(NODE_CONFIG, "10.8.0.1", "socle-vps"))

    assert config["clusters"] == [{"name": "socle-vps", "cluster": {
        "certificate-authority-data": "Q0EK", "server": "https://10.8.0.1:6443"}}]
    assert config["users"][0]["user"]["client-key-data"] == "S0VZCg=="
    assert config["current-context"] == "socle-vps"
    assert config["contexts"][0]["context"] == {"cluster": "socle-vps", "user": "socle-vps"}


@pytest.mark.parametrize("text", ["not: [a, kubeconfig", "clusters: []\n",
                                  NODE_CONFIG.replace("client-key-data", "other")])
def test_anything_but_an_admin_kubeconfig_is_refused(text: str) -> None:
    with pytest.raises(KubeconfigError):
        admin_kubeconfig(text, "10.8.0.1", "socle-vps")


def test_written_private_and_replacing_a_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "kubeconfig"
    target.write_text("old")
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_private(target, "secret\n")
    finally:
        os.umask(old_umask)

    assert target.read_text() == "secret\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["kubeconfig"]
