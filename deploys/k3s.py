"""Phase 3: a pinned single-node k3s (SQLite datastore, Traefik, ServiceLB), its API on
the VPN only, nothing else public, and the agent's access to the cluster.

    pyinfra inventories/prod.py deploys/k3s.py

The version and sha256 come from versions.toml (``socle_versions_file`` names another).
The binary comes from the pinned release, or from ``k3s_airgap_dir`` with the images
archive. Before anything on the node changes: the pin must be confirmed, the air-gap
files must match it, and a new pin may only be the next minor version at most; a newer
pin takes the provider's snapshot of the VPS first when ``ovh_vps.snapshot_before_upgrade``
is on, then a datastore snapshot with the agent. Going back is
``deploys/k3s_rollback.py`` (docs/runbooks/rollback-k3s.md).
"""

from pathlib import Path

from pyinfra import host
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from facts.k3s_state import K3sInstall
from operations import k3s, kube_objects, text_files, ufw, vps_snapshot
from socle import inventory_checks, k3s_plan
from socle.firewall_plan import firewall_rules
from socle.k3s_manifests import (
    ingress_check_objects,
    load_manifests,
    missing_namespaces,
    with_digests,
)
from socle.versions import VersionsError, load_versions

data = host.data.dict()
inventory_checks.check_firewall(data)
settings = k3s_plan.k3s_settings(data)
try:
    versions = load_versions(settings.versions_file)
    node = host.get_fact(K3sInstall)
    arch = k3s_plan.node_arch(node["machine"])
    pin = versions.k3s
    binary_sha256 = pin.artefacts(arch).require_binary()
    images_sha256 = pin.artefacts(arch).require_airgap_images() if settings.airgap_dir else None
    ingress_image = (
        versions.images["test-ingress"].require_reference() if settings.test_ingress else None
    )
except VersionsError as error:
    raise k3s_plan.K3sRefused(str(error)) from None
upgrading = False
if node["sha256"] != binary_sha256:
    change = k3s_plan.binary_change(node["version"], pin.version)
    if change == "upgrade" and not node["agent"]:
        raise k3s_plan.K3sRefused(
            f"upgrading k3s {node['version']} to {pin.version} needs a datastore snapshot "
            "first, taken by socle's agent, which is not installed: deploy it "
            "(deploys/agent.py), then run this again"
        )
    upgrading = change == "upgrade"
airgap = None
if settings.airgap_dir is not None:
    airgap = k3s_plan.airgap_files(settings.airgap_dir, arch)
    k3s_plan.check_sha256(airgap.binary, binary_sha256, f"the k3s {pin.version} binary")
    assert images_sha256 is not None
    k3s_plan.check_sha256(airgap.images, images_sha256, "the air-gap images")
agent_manifests = load_manifests(Path("gitops/agent"))
token_secret = next(
    o for o in agent_manifests
    if o["kind"] == "Secret" and o.get("type") == "kubernetes.io/service-account-token"
)

if upgrading:
    # The whole VPS at the provider, before the datastore snapshot and the new binary
    # (a no-op unless the inventory's ovh_vps.snapshot_before_upgrade is on).
    vps_snapshot.before_upgrade(
        name="The provider's snapshot of the VPS before the k3s upgrade",
        ovh_vps=data.get("ovh_vps"),
        reason=f"before k3s {pin.version} (from {node['version']})",
    )
binary = k3s.binary(
    name=f"k3s {pin.version} binary, sha256 checked before it replaces anything",
    version=pin.version,
    sha256=binary_sha256,
    url=None if airgap else k3s_plan.release_url(pin, arch),
    local_file=str(airgap.binary) if airgap else None,
)
images = None
if airgap is not None:
    assert images_sha256 is not None
    images = k3s.airgap_images(
        name="Air-gap images where k3s loads them, sha256 checked",
        local_file=str(airgap.images),
        sha256=images_sha256,
    )

k3s.kernel_features(name="Kernel modules k3s needs, loaded")
text_files.file(
    name="Kernel modules k3s needs, at boot",
    path="/etc/modules-load.d/socle-k3s.conf",
    content=k3s_plan.kernel_modules(),
)
text_files.file(
    name="Kernel settings k3s needs",
    path="/etc/sysctl.d/60-socle-k3s.conf",
    content=k3s_plan.kernel_settings(),
    then="sysctl -q -p /etc/sysctl.d/60-socle-k3s.conf",
)
ufw.firewall(
    name="Firewall: deny incoming, the public surface and the VPN's admin ports",
    rules=firewall_rules(data),
    ssh_port=inventory_checks.ssh_port(data),
)

files.directory(name="k3s configuration folder", path="/etc/rancher/k3s")
files.directory(name="k3s auto-deploy manifests folder", path=k3s_plan.MANIFESTS_DIR)
config = text_files.file(
    name="k3s configuration: SQLite, Traefik and ServiceLB, vxlan, VPN address in tls-san",
    path=k3s_plan.CONFIG_FILE,
    content=k3s_plan.render_config(settings),
    mode="600",
)
text_files.file(
    name="Traefik without node ports",
    path=f"{k3s_plan.MANIFESTS_DIR}/socle-traefik-config.yaml",
    content=k3s_plan.TRAEFIK_CONFIG,
    mode="600",
)
unit = text_files.file(
    name="k3s systemd unit",
    path=k3s_plan.UNIT_FILE,
    content=k3s_plan.SYSTEMD_UNIT,
)
systemd.daemon_reload(name="systemd reads the k3s unit", _if=unit.did_change)
changes = [binary, config, unit] + ([images] if images is not None else [])
k3s.service(
    name="k3s restarted on a new binary, images, configuration or unit",
    restart=True,
    _if=any_changed(*changes),
)
k3s.service(name="k3s enabled and running")
k3s.wait_ready(
    name=f"Node Ready with k3s {pin.version}",
    version=pin.version,
    timeout=settings.ready_timeout,
)

# The namespaces gitops/agent grants in without defining (PostgreSQL's), as the phase
# that owns them writes them.
for missing in missing_namespaces(agent_manifests):
    kube_objects.namespace(missing)
# A bootstrap: the agent needs its identity before Argo CD runs; once Argo CD syncs
# gitops/agent (an application of the root), the objects are its own.
k3s.objects(
    name="The agent's identity in the cluster (gitops/agent/)",
    manifests=with_digests(agent_manifests),
    leave_to_argocd=True,
)
k3s.agent_kubeconfig(
    name="The agent's kubeconfig from its ServiceAccount token",
    path=k3s_plan.agent_kubeconfig_path(data),
    namespace=token_secret["metadata"]["namespace"],
    secret=token_secret["metadata"]["name"],
)
k3s.objects(
    name=(
        f"Test ingress for {settings.test_ingress_host}"
        if settings.test_ingress
        else "No test ingress"
    ),
    # Removal finds the objects by kind and name: the image does not matter then.
    manifests=with_digests(
        ingress_check_objects(settings.test_ingress_host, ingress_image or "removed")
    ),
    present=settings.test_ingress,
)
k3s.exposure_guard(
    name="Nothing public but Traefik's 80 and 443, admin surfaces on the VPN address only",
    allowed=settings.exposure_allowed,
    vpn_address=settings.vpn_address,
)
