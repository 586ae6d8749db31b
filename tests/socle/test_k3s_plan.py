"""Phase 3's plan: settings from the inventory, the k3s configuration, upgrade paths,
air-gap files checked against their pins."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from socle.exposure import AllowedExposure
from socle.inventory_checks import InventoryDataError
from socle.k3s_plan import (
    SYSTEMD_UNIT,
    TRAEFIK_CONFIG,
    K3sRefused,
    airgap_files,
    binary_change,
    check_sha256,
    k3s_settings,
    node_arch,
    release_url,
    render_config,
)
from socle.versions import load_versions

DATA: dict[str, Any] = {
    "wireguard_address": "10.8.0.1/24",
    "cluster_pod_cidr": "10.42.0.0/16",
    "cluster_service_cidr": "10.43.0.0/16",
}


def test_config_holds_what_the_design_asks() -> None:
    config = yaml.safe_load(render_config(k3s_settings(DATA)))

    assert config == {
        "write-kubeconfig-mode": "0600",
        "tls-san": ["10.8.0.1"],
        "flannel-backend": "vxlan",
        "cluster-cidr": "10.42.0.0/16",
        "service-cidr": "10.43.0.0/16",
        "secrets-encryption": True,
    }
    # SQLite, Traefik and ServiceLB are k3s's defaults: nothing may switch them off.
    assert not {"cluster-init", "datastore-endpoint", "disable", "bind-address"} & set(config)


def test_unit_is_the_one_k3s_expects() -> None:
    for line in ("Type=notify", "Delegate=yes", "KillMode=process", "LimitNOFILE=1048576",
                 "TasksMax=infinity", "ExecStart=/usr/local/bin/k3s server"):
        assert line in SYSTEMD_UNIT.splitlines()


def test_traefik_gets_no_node_ports() -> None:
    config = yaml.safe_load(TRAEFIK_CONFIG)
    values = yaml.safe_load(config["spec"]["valuesContent"])

    assert (config["kind"], config["metadata"]["name"]) == ("HelmChartConfig", "traefik")
    assert values == {"service": {"spec": {"allocateLoadBalancerNodePorts": False}}}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("k3s_airgap_dir", "/no/such/folder", "not a folder"),
        ("k3s_ready_timeout", 1, "10 to 3600"),
        ("k3s_test_ingress", "yes", "True or False"),
        ("k3s_test_ingress_host", "Not A Host", "DNS host name"),
        ("k3s_exposure_allowed", [{"namespace": "x"}], "exactly namespace"),
        ("k3s_exposure_allowed", [{"namespace": "x", "service": "y", "ports": [0]}],
         "list of ports"),
    ],
)
def test_bad_inventory_values_are_refused_by_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(InventoryDataError, match=message) as refused:
        k3s_settings({**DATA, key: value})
    assert refused.value.key.startswith(key)


def test_allow_list_from_the_inventory() -> None:
    settings = k3s_settings({**DATA, "k3s_exposure_allowed": [
        {"namespace": "kube-system", "service": "traefik", "ports": [443, 80]}]})

    assert settings.exposure_allowed == (AllowedExposure("kube-system", "traefik", (80, 443)),)


@pytest.mark.parametrize(
    ("installed", "pinned", "change"),
    [
        (None, "v1.33.2+k3s1", "install"),
        ("v1.33.2+k3s1", "v1.33.2+k3s1", "repair"),
        ("v1.33.1+k3s1", "v1.33.2+k3s1", "upgrade"),
        ("v1.33.2+k3s1", "v1.33.2+k3s2", "upgrade"),
        ("v1.32.9+k3s1", "v1.33.2+k3s1", "upgrade"),
    ],
)
def test_binary_changes(installed: str | None, pinned: str, change: str) -> None:
    assert binary_change(installed, pinned) == change


def test_skipping_a_minor_version_is_refused() -> None:
    with pytest.raises(K3sRefused, match=r"one minor version at a time; pin a v1\.32\.x"):
        binary_change("v1.31.4+k3s1", "v1.33.2+k3s1")


def test_going_back_is_a_rollback_not_a_deploy() -> None:
    with pytest.raises(K3sRefused, match="deploys/k3s_rollback.py"):
        binary_change("v1.33.2+k3s1", "v1.33.1+k3s1")


def test_architectures_and_release_url() -> None:
    pin = load_versions().k3s

    assert node_arch("x86_64") == "amd64" and node_arch("aarch64") == "arm64"
    with pytest.raises(K3sRefused, match="riscv64"):
        node_arch("riscv64")
    assert release_url(pin, "arm64") == (
        f"{pin.release_url}/{pin.version.replace('+', '%2B')}/k3s-arm64"
    )


def test_airgap_folder_needs_the_binary_and_one_images_archive(tmp_path: Path) -> None:
    (tmp_path / "k3s").write_bytes(b"binary")
    with pytest.raises(K3sRefused, match="exactly one of"):
        airgap_files(tmp_path, "amd64")
    (tmp_path / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"images")

    files = airgap_files(tmp_path, "amd64")

    assert files.binary.name == "k3s" and files.images.name.endswith(".tar.zst")
    with pytest.raises(K3sRefused, match="no k3s-arm64"):
        airgap_files(tmp_path, "arm64")


def test_a_file_whose_sha256_differs_from_the_pin_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    binary = tmp_path / "k3s"
    binary.write_bytes(b"not the pinned release")
    actual = hashlib.sha256(b"not the pinned release").hexdigest()
    pinned = "b" * 64

    check_sha256(binary, actual, "the k3s binary")
    with pytest.raises(K3sRefused, match=f"sha256 mismatch.*{pinned}.*{actual}"):
        check_sha256(binary, pinned, "the k3s binary")
