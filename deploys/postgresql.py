"""Phase 6: the Secret PostgreSQL, its exporter and the node agent read, from SOPS.

    pyinfra inventories/prod.py deploys/postgresql.py

PostgreSQL itself (the official image by digest in a StatefulSet on local-path, its
Services and NetworkPolicy) and postgres_exporter are Argo CD applications (gitops/root,
gitops/postgresql, gitops/postgres-exporter). This deploy creates the Secret
database/postgresql-credentials (keys `username` and `password`, the names the agent's
cluster discovery reads) from `postgresql_credentials.password_sops`, never in git.

Admins connect with a desktop client to <VPN address>:5432 over the VPN.
"""

from pyinfra import host
from pyinfra.api import HiddenValue

from operations import kube_objects
from socle import cluster_manifests as manifests
from socle.gitops_values import PinRefused, host_versions, sops_value
from socle.versions import VersionsError

data = host.data.dict()
# Refused before anything changes when the image's digest is not confirmed.
try:
    host_versions(data).postgresql.require_reference()
except VersionsError as error:
    raise PinRefused(str(error)) from None
password = sops_value(data, "postgresql_credentials.password_sops")

kube_objects.namespace_secrets(
    "database",
    {
        "postgresql-credentials": HiddenValue(
            manifests.manifest_text(manifests.postgresql_secret(password))
        ),
    },
)
