"""Every phase of socle, in order.

    pyinfra inventories/prod.py deploys/all.py

Each phase is also a deploy of its own (`pyinfra inventories/prod.py deploys/baseline.py`).
"""

from pyinfra import local

PHASES = (
    "deploys/baseline.py",
    "deploys/wireguard.py",
    "deploys/k3s.py",
    "deploys/agent.py",
)

for phase in PHASES:
    local.include(phase)
