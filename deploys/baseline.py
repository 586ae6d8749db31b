"""Phase 1: a hardened baseline. SSH keys only, UFW default-deny, sysctl, upgrades, time.

    pyinfra inventories/prod.py deploys/baseline.py

The inventory is checked first (socle.inventory_checks): a value that could lock the
operator out stops the deploy before anything changes on the host.
"""

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, systemd

from facts.ssh_access import AuthorizedKeys
from operations import sshd, text_files, ufw
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
missing = [name for name in packages if name not in installed]
if missing:
    apt.packages(name="Baseline packages", packages=missing, update=True)

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

text_files.file(
    name="Unattended security upgrades, daily",
    path="/etc/apt/apt.conf.d/20auto-upgrades",
    content='APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n',
)

sysctl_lines = [f"{key} = {value}" for key, value in data.get("sysctl_hardening", {}).items()]
text_files.file(
    name="Kernel hardening settings",
    path="/etc/sysctl.d/60-socle-hardening.conf",
    content="# Managed by socle.\n" + "".join(line + "\n" for line in sysctl_lines),
    then="sysctl -q -p /etc/sysctl.d/60-socle-hardening.conf",
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
