"""What phase 3 wants on the node: k3s's settings, its configuration file and unit, and
whether a pin may replace the installed binary.

Pure functions over inventory data and the pinned versions; ``deploys/k3s.py`` and the
operations in ``operations/k3s.py`` put them on the node.

Inventory keys read here (all optional but the VPN and cluster ranges of phase 2):

- ``k3s_airgap_dir``: a folder on the operator's machine holding the release's binary
  (``k3s`` or ``k3s-arm64``) and air-gap images archive (``k3s-airgap-images-<arch>.tar.zst``,
  ``.tar.gz`` or ``.tar``); without it the node downloads the binary from the pinned
  release URL and pulls images itself.
- ``socle_versions_file``: another pinned versions file than ``versions.toml`` (a staging
  pin, or a test's); production leaves it unset.
- ``k3s_ready_timeout``: seconds to wait for the node to be Ready (default 300).
- ``k3s_test_ingress``: ``True`` installs the test workload behind a Traefik Ingress,
  ``False`` (default) removes it; ``k3s_test_ingress_host`` is the host name it answers.
- ``k3s_exposure_allowed``: the Services allowed to be public, with their ports
  (default: Traefik's 80 and 443).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pyinfra.api.exceptions import DeployError

from socle.exposure import DEFAULT_ALLOWED, AllowedExposure
from socle.inventory_checks import InventoryDataError, cluster_ranges, vpn_interface
from socle.versions import (
    VERSIONS_FILE_KEY,
    K3sPin,
    VersionsError,
    host_versions_file,
    k3s_minor,
)

INSTALL_PATH = "/usr/local/bin/k3s"
# Root-only: the previous binary, a binary being staged, and the rollback record.
STATE_DIR = "/usr/local/lib/socle/k3s"
PREVIOUS_BINARY = f"{STATE_DIR}/k3s.previous"
ROLLBACK_RECORD = f"{STATE_DIR}/rollback.json"
CONFIG_FILE = "/etc/rancher/k3s/config.yaml"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
UNIT_FILE = "/etc/systemd/system/k3s.service"
DATA_DIR = "/var/lib/rancher/k3s"
IMAGES_DIR = f"{DATA_DIR}/agent/images"
MANIFESTS_DIR = f"{DATA_DIR}/server/manifests"
AGENT_KUBECONFIG = "/etc/socle/agent-kubeconfig"
API_PORT = 6443
DEFAULT_READY_TIMEOUT = 300
DEFAULT_TEST_INGRESS_HOST = "test-ingress.socle.invalid"
ROLLBACK_COMMAND = "pyinfra inventories/prod.py deploys/k3s_rollback.py"

ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
BINARY_NAMES = {"amd64": "k3s", "arm64": "k3s-arm64"}
IMAGES_SUFFIXES = (".tar.zst", ".tar.gz", ".tar")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})+$")
_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)$")

# The unit the k3s install script writes, minus its environment files: socle configures
# k3s through config.yaml only. Start is bounded by socle's own wait, not by systemd.
SYSTEMD_UNIT = """\
# Managed by socle (deploys/k3s.py): the unit k3s's installer writes.
[Unit]
Description=Lightweight Kubernetes (k3s server)
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
KillMode=process
Delegate=yes
User=root
# Accounting is done by cgroups; non-zero limits here cost performance in the kernel.
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/k3s server
"""

# What k3s needs from the kernel: overlayfs for containerd, bridge netfilter for pods.
KERNEL_MODULES = ("overlay", "br_netfilter")
# (IP forwarding is phase 2's: deploys/wireguard.py.)
KERNEL_SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
}

# ServiceLB listens for Traefik on the node's 80 and 443 (hostPort, bypassing UFW); the
# node ports a LoadBalancer Service gets by default would be public too, and ServiceLB
# does not need them (it forwards to the cluster address).
TRAEFIK_CONFIG = """\
# Managed by socle (deploys/k3s.py): k3s's Traefik without node ports, which would be
# public whatever UFW says. ServiceLB forwards 80 and 443 to Traefik's cluster address.
apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata:
  name: traefik
  namespace: kube-system
spec:
  valuesContent: |-
    service:
      spec:
        allocateLoadBalancerNodePorts: false
"""


class K3sRefused(DeployError):
    """The pin, the air-gap files or the node's state forbid what the deploy would do."""


@dataclass(frozen=True)
class K3sSettings:
    """Phase 3's settings, checked."""

    vpn_address: str
    pod_cidr: str
    service_cidr: str
    airgap_dir: Path | None
    versions_file: Path | None
    ready_timeout: int
    test_ingress: bool
    test_ingress_host: str
    exposure_allowed: tuple[AllowedExposure, ...]


def k3s_settings(data: Mapping[str, Any]) -> K3sSettings:
    """Return phase 3's settings from a host's inventory data, or raise naming the key."""
    ranges = cluster_ranges(data)
    airgap = data.get("k3s_airgap_dir")
    if airgap is not None and (not isinstance(airgap, str) or not Path(airgap).is_dir()):
        raise InventoryDataError("k3s_airgap_dir", f"{airgap!r} is not a folder on this machine")
    try:
        versions_file = host_versions_file(data)
    except VersionsError as error:
        raise InventoryDataError(VERSIONS_FILE_KEY, str(error)) from None
    timeout = data.get("k3s_ready_timeout", DEFAULT_READY_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 10 <= timeout <= 3600:
        raise InventoryDataError("k3s_ready_timeout", f"{timeout!r} is not 10 to 3600 seconds")
    test_ingress = data.get("k3s_test_ingress", False)
    if not isinstance(test_ingress, bool):
        raise InventoryDataError(
            "k3s_test_ingress", f"expected True or False, got {test_ingress!r}"
        )
    host = data.get("k3s_test_ingress_host", DEFAULT_TEST_INGRESS_HOST)
    if not isinstance(host, str) or not _HOST_NAME.match(host):
        raise InventoryDataError("k3s_test_ingress_host", f"{host!r} is not a DNS host name")
    return K3sSettings(
        vpn_address=str(vpn_interface(data).ip),
        pod_cidr=str(ranges["cluster_pod_cidr"]),
        service_cidr=str(ranges["cluster_service_cidr"]),
        airgap_dir=Path(airgap) if airgap else None,
        versions_file=versions_file,
        ready_timeout=timeout,
        test_ingress=test_ingress,
        test_ingress_host=host,
        exposure_allowed=allowed_exposures(data.get("k3s_exposure_allowed")),
    )


def allowed_exposures(value: Any, key: str = "k3s_exposure_allowed") -> tuple[AllowedExposure, ...]:
    """The allow-list from the inventory: ``[{"namespace", "service", "ports"}]``."""
    if value is None:
        return DEFAULT_ALLOWED
    if not isinstance(value, list):
        raise InventoryDataError(key, "expected a list of {namespace, service, ports}")
    allowed = []
    for index, entry in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(entry, Mapping) or set(entry) != {"namespace", "service", "ports"}:
            raise InventoryDataError(where, "expected exactly namespace, service and ports")
        ports = entry["ports"]
        if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports
        ):
            raise InventoryDataError(f"{where}.ports", f"{ports!r} is not a list of ports")
        allowed.append(AllowedExposure(str(entry["namespace"]), str(entry["service"]),
                                       tuple(sorted(ports))))
    return tuple(allowed)


def render_config(settings: K3sSettings) -> str:
    """Return ``/etc/rancher/k3s/config.yaml``.

    SQLite is k3s's datastore when neither ``cluster-init`` nor ``datastore-endpoint`` is
    set; Traefik and ServiceLB run unless ``disable`` names them. The API keeps its
    default bind address (binding it to the VPN address breaks kube-system pods): the
    VPN address goes in ``tls-san`` and the firewall keeps 6443 on the VPN.
    """
    return (
        "# Managed by socle (deploys/k3s.py): edit the inventory, not this file.\n"
        "# Datastore: SQLite (no cluster-init, no datastore-endpoint).\n"
        "# Traefik and ServiceLB on (nothing disabled).\n"
        'write-kubeconfig-mode: "0600"\n'
        "tls-san:\n"
        f"  - {settings.vpn_address}\n"
        "# vxlan: flannel's WireGuard backend would want 51820/udp, the admins' VPN.\n"
        "flannel-backend: vxlan\n"
        f"cluster-cidr: {settings.pod_cidr}\n"
        f"service-cidr: {settings.service_cidr}\n"
        "secrets-encryption: true\n"
    )


def kernel_settings() -> str:
    """Return the sysctl drop-in k3s needs."""
    lines = [f"{key} = {value}" for key, value in KERNEL_SYSCTLS.items()]
    return "# Managed by socle (deploys/k3s.py): what k3s needs.\n" + "\n".join(lines) + "\n"


def kernel_modules() -> str:
    """Return the modules-load.d file for the modules k3s needs at boot."""
    modules = "".join(f"{name}\n" for name in KERNEL_MODULES)
    return "# Managed by socle (deploys/k3s.py): what k3s needs.\n" + modules


def node_arch(machine: str) -> str:
    """Return k3s's name for a node's ``uname -m`` (``amd64`` or ``arm64``)."""
    if machine not in ARCHITECTURES:
        raise K3sRefused(f"k3s has no release for the node's architecture {machine!r}")
    return ARCHITECTURES[machine]


def release_url(pin: K3sPin, arch: str) -> str:
    """Return the URL of the pinned release's binary for ``arch``."""
    return f"{pin.release_url}/{quote(pin.version, safe='')}/{BINARY_NAMES[arch]}"


def version_key(version: str) -> tuple[int, int, int, int]:
    """``v1.33.2+k3s1`` as a tuple that orders releases."""
    match = _VERSION.match(version)
    if match is None:
        raise VersionsError(f"{version!r} is not a k3s release version (like v1.33.2+k3s1)")
    return tuple(int(part) for part in match.groups())  # type: ignore[return-value]


def binary_change(installed: str | None, pinned: str) -> str:
    """What replacing the installed k3s with the pinned one is.

    Returns ``install`` (none installed), ``repair`` (the same version, other bytes) or
    ``upgrade`` (newer, at most one minor version ahead). Raises ``K3sRefused`` for an
    older version (that is a rollback) or one that skips a minor version.

    >>> binary_change("v1.32.5+k3s1", "v1.33.2+k3s1")
    'upgrade'
    """
    if installed is None:
        return "install"
    if installed == pinned:
        return "repair"
    old, new = version_key(installed), version_key(pinned)
    if new < old:
        raise K3sRefused(
            f"the node runs k3s {installed}, newer than the pin {pinned}: going back is a "
            f"rollback, with the datastore snapshot taken before the upgrade: {ROLLBACK_COMMAND}",
        )
    (old_major, old_minor), (new_major, new_minor) = k3s_minor(installed), k3s_minor(pinned)
    if new_major != old_major or new_minor > old_minor + 1:
        raise K3sRefused(
            f"the node runs k3s {installed} and the pin is {pinned}: k3s upgrades one minor "
            f"version at a time; pin a v{old_major}.{old_minor + 1}.x release first",
        )
    return "upgrade"


@dataclass(frozen=True)
class AirgapFiles:
    """The binary and images archive of one architecture in an air-gap folder."""

    binary: Path
    images: Path


def airgap_files(folder: Path, arch: str) -> AirgapFiles:
    """Return the release's files for ``arch`` in ``folder``, or raise naming what lacks."""
    binary = folder / BINARY_NAMES[arch]
    if not binary.is_file():
        raise K3sRefused(f"k3s_airgap_dir: {folder} holds no {BINARY_NAMES[arch]} for {arch}")
    names = [f"k3s-airgap-images-{arch}{suffix}" for suffix in IMAGES_SUFFIXES]
    found = [folder / name for name in names if (folder / name).is_file()]
    if len(found) != 1:
        raise K3sRefused(
            f"k3s_airgap_dir: {folder} must hold exactly one of {', '.join(names)} "
            f"(found {len(found)})",
        )
    return AirgapFiles(binary, found[0])


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def agent_kubeconfig_path(data: Mapping[str, Any]) -> str:
    """Where the agent reads its kubeconfig: its settings' ``postgres.kubernetes.kubeconfig``,
    else ``/etc/socle/agent-kubeconfig``."""
    settings = data.get("agent_settings") or {}
    kube = (settings.get("postgres") or {}).get("kubernetes") or {}
    path = kube.get("kubeconfig", AGENT_KUBECONFIG)
    if not isinstance(path, str) or not path.startswith("/etc/socle/"):
        raise InventoryDataError(
            "agent_settings.postgres.kubernetes.kubeconfig", f"{path!r} is not under /etc/socle/"
        )
    return path


def check_sha256(path: Path, expected: str, what: str) -> None:
    """Refuse ``path`` unless its sha256 is the pinned one, naming both."""
    actual = file_sha256(path)
    if actual != expected:
        raise K3sRefused(
            f"sha256 mismatch for {what} {path}: the pin says {expected}, the file is "
            f"{actual}; refusing to install it (nothing on the node was changed)",
        )


def rollback_needed(
    record: Mapping[str, Any] | None,
    installed: tuple[str | None, str | None],
    previous_sha256: str | None,
    pinned: tuple[str, str],
) -> bool:
    """Whether the last upgrade is to be rolled back to the pin; raises ``K3sRefused``
    when it cannot be.

    + record: the rollback record the upgrade wrote (``None`` when there is none)
    + installed: the installed binary's ``(version, sha256)``
    + previous_sha256: the sha256 of the binary the upgrade kept
    + pinned: the pin's ``(version, sha256)``, which must be the previous release again,
      so that the next deploy keeps it instead of upgrading once more

    Returns ``False`` when the pinned release runs and no upgrade is recorded.
    """
    version, sha256 = pinned
    if record is None:
        if installed == (version, sha256):
            return False
        raise K3sRefused(
            f"no upgrade to roll back: {ROLLBACK_RECORD} is absent (the node runs "
            f"{installed[0]}, the pin is {version})"
        )
    needed = {"previous_version", "previous_sha256", "snapshot", "upgraded_to"}
    if not needed <= set(record):
        raise K3sRefused(f"{ROLLBACK_RECORD} cannot be read: {dict(record)}")
    if (record["previous_version"], record["previous_sha256"]) != (version, sha256):
        raise K3sRefused(
            f"the pin is k3s {version} but the upgrade to roll back came from "
            f"{record['previous_version']}: put the versions file back to the pin from before "
            "the upgrade (git revert), so the next deploy keeps it, then run this again"
        )
    if previous_sha256 != sha256:
        raise K3sRefused(
            f"the kept binary {PREVIOUS_BINARY} does not have the pinned sha256 {sha256} "
            f"(it has {previous_sha256}): refusing to put it back"
        )
    return True
