"""Phase 4: Argo CD from the pinned chart, then the app of apps on gitops/.

    pyinfra inventories/prod.py deploys/argocd.py

1. k3s's HelmChart installs the pinned argo-cd chart (versions.toml) with
   gitops/argocd/values.yaml (failurePolicy abort: a failed install waits for a person);
2. once Argo CD runs, the HelmChart is marked unmanaged and, once the cluster holds it so,
   the Helm release's records are removed: helm-controller lets go before Argo CD takes
   over, so the two never own the release together;
3. the repository's credentials (a private repository) become a Secret, from SOPS;
4. only then, the root Application (gitops/root) is written as an auto-deploy manifest,
   with the values from outside git (versions, the inventory's addresses and alerting); its child
   `argocd` adopts Argo CD's objects, and the others follow (monitoring, PostgreSQL, the
   agent's access).

Everything is checked before the node changes: the inventory's data, the versions file
(an unconfirmed image digest is refused, naming `socle pins`), the SOPS secrets.
See it live: `kubectl -n argocd get applications` with `socle kubeconfig`'s file, or
Argo CD's UI on the argocd-server Service over the VPN.
"""

from pathlib import Path

from pyinfra import host
from pyinfra.api import HiddenValue
from pyinfra.operations import server

from facts.kube_objects import KubeObject
from operations import kube_objects, text_files
from socle import cluster_manifests as manifests
from socle.gitops_values import PinRefused, host_versions, repository_credentials, root_values
from socle.versions import VersionsError

data = host.data.dict()
versions = host_versions(data)
try:
    values = root_values(data, versions)
except VersionsError as error:
    raise PinRefused(str(error)) from None
credentials = repository_credentials(data)
argocd_values = Path(manifests.ARGOCD_VALUES).read_text()
namespace = manifests.ARGOCD_NAMESPACE

# Argo CD manages itself once its own Application exists; the hand-over has begun once
# the cluster's HelmChart is unmanaged. Either way the bootstrap is never written again:
# a managed HelmChart over a handed-over release would have helm-controller install it anew.
application = host.get_fact(
    KubeObject, kind="applications.argoproj.io", object_name="argocd", namespace=namespace
)
chart = host.get_fact(
    KubeObject, kind="helmcharts.helm.cattle.io", object_name=manifests.ARGOCD_RELEASE,
    namespace="kube-system",
)  # fmt: skip
unmanaged = ((chart or {}).get("metadata", {}).get("annotations") or {}).get(
    manifests.UNMANAGED_ANNOTATION
) == "true"
bootstrap_path = kube_objects.manifest_path("argocd")

if application is None and not unmanaged:
    text_files.file(
        name="Argo CD bootstrap: k3s HelmChart of the pinned chart",
        path=bootstrap_path,
        content=manifests.manifest_text(manifests.argocd_helmchart(versions, argocd_values, False)),
        mode="600",
    )
    for workload, kind in (
        ("argocd-server", "deployment"),
        ("argocd-repo-server", "deployment"),
        ("argocd-application-controller", "statefulset"),
    ):
        kube_objects.wait_ready(
            name=f"Argo CD's {workload} ready", kind=kind, object_name=workload, namespace=namespace
        )

# The hand-over: helm-controller leaves the release alone from now on (also after a k3s
# restart, which re-applies this file), and no Helm release record claims the objects.
text_files.file(
    name="Argo CD bootstrap handed over: the HelmChart unmanaged",
    path=bootstrap_path,
    content=manifests.manifest_text(manifests.argocd_helmchart(versions, argocd_values, True)),
    mode="600",
)
if application is None:
    # Only once the cluster holds the unmanaged HelmChart: before, helm-controller could
    # still act on the release whose records go.
    kube_objects.wait_annotation(
        name="The cluster's HelmChart unmanaged",
        kind="helmcharts.helm.cattle.io",
        object_name=manifests.ARGOCD_RELEASE,
        namespace="kube-system",
        annotation=manifests.UNMANAGED_ANNOTATION,
        value="true",
    )
    server.shell(
        name="Helm's records of the bootstrap release removed",
        commands=[
            f"k3s kubectl -n {namespace} delete secret -l owner=helm,name="
            f"{manifests.ARGOCD_RELEASE} --ignore-not-found"
        ],
    )

if credentials is not None:
    kube_objects.apply_secret(
        "socle-repository",
        namespace,
        HiddenValue(
            manifests.manifest_text(
                manifests.repository_secret(values["repository"]["url"], credentials)
            )
        ),
    )

text_files.file(
    name="The root Application (app of apps on gitops/)",
    path=kube_objects.manifest_path("root-application"),
    content=manifests.manifest_text(manifests.root_application(values)),
    mode="600",
)
