"""The production VPS (OVH, Ubuntu 24.04), reached over SSH as `ubuntu` with sudo.

    pyinfra inventories/prod.py deploys/all.py          # every phase, in order
    pyinfra inventories/prod.py deploys/k3s.py          # one phase

Its data is in group_data/prod.py.
"""

prod = [
    (
        "vps",
        {
            # PLACEHOLDER: the VPS's public address (a documentation address until set).
            "ssh_hostname": "203.0.113.10",
            "ssh_user": "ubuntu",
            "_sudo": True,
        },
    ),
]
