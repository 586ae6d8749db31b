"""Every phase of socle, in order, with a progress line per phase.

    pyinfra inventories/prod.py deploys/all.py

Each phase is also a deploy of its own (`pyinfra inventories/prod.py deploys/baseline.py`).
A phase that fails stops the run on that host, naming the phase and what to look at.
The off-site repository comes before the agent, so the agent's first start (which catches
every scheduled job up) finds it.
"""

from pyinfra import state

from operations.phases import Phase, PhaseRunner

PHASES = (
    Phase("baseline", "deploys/baseline.py",
          "sshd -t and /etc/ssh/sshd_config.d/, `ufw status verbose` on the node"),
    Phase("wireguard", "deploys/wireguard.py",
          "`systemctl status wg-quick@wg0` and `wg show` on the node"),
    Phase("k3s", "deploys/k3s.py",
          "`systemctl status k3s`, `journalctl -u k3s` and `k3s kubectl get nodes` on the node"),
    Phase("argocd", "deploys/argocd.py",
          "`k3s kubectl -n kube-system get helmchart argocd -o yaml` (its status) and "
          "`k3s kubectl -n argocd get pods,applications` on the node"),
    Phase("monitoring", "deploys/monitoring.py",
          "`k3s kubectl -n monitoring get secrets,pods` on the node, and docs/gitops.md"),
    Phase("postgresql", "deploys/postgresql.py",
          "`k3s kubectl -n database get secrets,pods` on the node, and docs/postgresql.md"),
    Phase("offsite", "deploys/offsite.py",
          "`sudo socle-offsite-restic snapshots` on the node, and docs/offsite.md"),
    Phase("agent", "deploys/agent.py",
          "`systemctl status socle-agent` and `journalctl -u socle-agent` on the node"),
)  # fmt: skip

PhaseRunner(state).include_all(PHASES)
