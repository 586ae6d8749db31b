"""Phase 1: a hardened baseline. SSH keys only, UFW default-deny, sysctl, upgrades, time.

    pyinfra inventories/prod.py deploys/baseline.py

The inventory is checked first (socle.inventory_checks): a value that could lock the
operator out stops the deploy before anything changes on the host.
"""

from io import StringIO

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server, systemd

from facts.ssh_access import AuthorizedKeys
from operations import sshd, ufw
from socle import inventory_checks
from socle.firewall_plan import firewall_rules

data = host.data.dict()
inventory_checks.check_firewall(data)
deploy_user = inventory_checks.deploy_user(data)
authorized_keys: list[str] = host.get_fact(AuthorizedKeys, user=deploy_user)
inventory_checks.check_ssh_access(data, deploy_user, authorized_keys, host.name)

installed = host.get_fact(DebPackages)
# Keep whichever time daemon the image ships: installing timesyncd would remove chrony.
time_daemon = next(
    (name for name in ("chrony", "ntpsec", "ntp") if name in installed), "systemd-timesyncd"
)
packages = ["openssh-server", "ufw", "unattended-upgrades", time_daemon]
apt.packages(
    name="Baseline packages",
    packages=packages,
    update=any(name not in installed for name in packages),
)

sshd.settings(
    name="SSH: keys only, no root login",
    settings={
        "PermitRootLogin": "no",
        "PasswordAuthentication": "yes" if data.get("ssh_password_login", False) else "no",
        "KbdInteractiveAuthentication": "no",
        "PermitEmptyPasswords": "no",
        "PubkeyAuthentication": "yes",
        "X11Forwarding": "no",
    },
)

AUTO_UPGRADES = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'
files.put(
    name="Unattended security upgrades, daily",
    src=StringIO(AUTO_UPGRADES),
    dest="/etc/apt/apt.conf.d/20auto-upgrades",
    user="root",
    group="root",
    mode="644",
)

sysctl_lines = [f"{key} = {value}" for key, value in data.get("sysctl_hardening", {}).items()]
sysctl_file = files.put(
    name="Kernel hardening settings",
    src=StringIO("# Managed by socle.\n" + "".join(line + "\n" for line in sysctl_lines)),
    dest="/etc/sysctl.d/60-socle-hardening.conf",
    user="root",
    group="root",
    mode="644",
)
server.shell(
    name="Apply the kernel hardening settings",
    commands=["sysctl -q -p /etc/sysctl.d/60-socle-hardening.conf"],
    _if=sysctl_file.did_change,
)

if time_daemon == "systemd-timesyncd":
    # Enabled only: timesyncd does not start inside a container, and on a VPS it
    # starts at boot.
    systemd.service(
        name="Time synchronisation", service="systemd-timesyncd", enabled=True, running=None
    )

ufw.firewall(
    name="Firewall: deny incoming, the public surface and the VPN's admin ports",
    rules=firewall_rules(data),
    ssh_port=inventory_checks.ssh_port(data),
)
