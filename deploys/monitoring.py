"""Phase 5: the Secrets kube-prometheus-stack reads, made from SOPS.

    pyinfra inventories/prod.py deploys/monitoring.py

kube-prometheus-stack itself is an Argo CD application (gitops/root, values in
gitops/kube-prometheus-stack): this deploy creates what must never be in git, before or
after Argo CD syncs (the pods wait for them):

- monitoring/alertmanager-smtp: the SMTP password of `alerting` (empty without a login);
- monitoring/grafana-admin: Grafana's admin login (`grafana_admin`).

The alerting settings are checked here too (they reach Alertmanager through the root
Application, deploys/argocd.py). A test alert: `socle alert test --inventory ...`.
"""

from pyinfra import host
from pyinfra.api import HiddenValue

from operations import kube_objects
from socle import cluster_manifests as manifests
from socle.gitops_values import alerting, sops_value

data = host.data.dict()
settings = alerting(data)
smtp_password = sops_value(data, "alerting.password_sops") if settings["username"] else ""
grafana = data.get("grafana_admin", {})
grafana_user = grafana.get("user", "admin")
grafana_password = sops_value(data, "grafana_admin.password_sops")

kube_objects.namespace_secrets(
    "monitoring",
    {
        "alertmanager-smtp": HiddenValue(
            manifests.manifest_text(manifests.alertmanager_smtp_secret(smtp_password))
        ),
        "grafana-admin": HiddenValue(
            manifests.manifest_text(manifests.grafana_admin_secret(grafana_user, grafana_password))
        ),
    },
)
