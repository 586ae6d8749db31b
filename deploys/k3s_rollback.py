"""Roll k3s back: the binary and the datastore from before the last upgrade.

    git revert <the commit that changed the k3s pin>     # the pin from before the upgrade
    pyinfra inventories/prod.py deploys/k3s_rollback.py

The upgrade (deploys/k3s.py) kept the previous binary and had the agent snapshot the
datastore first. This puts both back, once both are checked: the kept binary against
the pin (which must be the previous release again, so the next deploy keeps it), the
snapshot with the agent's drill. k3s is stopped for the restore; what the restore
replaces is moved aside, never deleted. See docs/runbooks/rollback-k3s.md.
"""

from pyinfra import host

from facts.k3s_state import K3sInstall
from operations import k3s
from socle import k3s_plan
from socle.versions import VersionsError, load_versions

data = host.data.dict()
settings = k3s_plan.k3s_settings(data)
node = host.get_fact(K3sInstall)
try:
    pin = load_versions(settings.versions_file).k3s
    sha256 = pin.artefacts(k3s_plan.node_arch(node["machine"])).require_binary()
except VersionsError as error:
    raise k3s_plan.K3sRefused(str(error)) from None
# Refused here, before any operation runs, when the rollback cannot be done.
k3s_plan.rollback_needed(
    node["rollback"], (node["version"], node["sha256"]), node["previous_sha256"],
    (pin.version, sha256),
)  # fmt: skip

k3s.rollback(
    name=f"k3s back to {pin.version} with the datastore snapshot from before the upgrade",
    version=pin.version,
    sha256=sha256,
)
k3s.wait_ready(
    name=f"Node Ready with k3s {pin.version}", version=pin.version, timeout=settings.ready_timeout
)
k3s.exposure_guard(
    name="Nothing public but Traefik's 80 and 443, admin surfaces on the VPN address only",
    allowed=settings.exposure_allowed,
    vpn_address=settings.vpn_address,
)
