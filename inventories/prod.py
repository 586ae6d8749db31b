"""The production VPS (OVH, Ubuntu 24.04), reached over SSH as `ubuntu` with sudo.

    pyinfra inventories/prod.py deploys/all.py          # every phase, in order
    pyinfra inventories/prod.py deploys/k3s.py          # one phase

Its data is in group_data/prod.py. Both are a template: every value marked PLACEHOLDER
(and any documentation address or example.org name) must be replaced first; until then
pyinfra stops here, listing each one with what to put there, before connecting anywhere.
"""

from pathlib import Path

from socle.inventory_template import refuse_placeholders

prod = [
    (
        "vps",
        {
            "ssh_hostname": "PLACEHOLDER: the VPS's public IPv4 address (OVH manager)",
            "ssh_user": "ubuntu",
            "_sudo": True,
        },
    ),
]

refuse_placeholders(prod, Path(__file__).resolve().parent / "group_data" / "prod.py")
