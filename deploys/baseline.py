"""Phase 1: a hardened baseline. SSH keys only, UFW default-deny, sysctl, upgrades, time,
and the host settings of the usual hardening baselines that do not break the platform.

    pyinfra inventories/prod.py deploys/baseline.py

The inventory is checked first (socle.inventory_checks, socle.sshd_policy): a value that
could lock the operator out stops the deploy before anything changes on the host.
docs/hardening.md says what is set, what is left as it is and why.
"""

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import Arch
from pyinfra.operations import apt, files, systemd

from facts.ssh_access import AuthorizedKeys, OpenSshServer, UserGroups
from operations import sshd, text_files, ufw
from socle import host_hardening, inventory_checks, sshd_policy
from socle.firewall_plan import firewall_rules

data = host.data.dict()
inventory_checks.check_firewall(data)
ssh_port = inventory_checks.ssh_port(data)
deploy_user = inventory_checks.deploy_user(data)
authorized_keys: list[str] = host.get_fact(AuthorizedKeys, user=deploy_user)
inventory_checks.check_ssh_access(data, deploy_user, authorized_keys, host.name)
banner = host_hardening.login_banner(data)
ssh_ban_jail = host_hardening.ssh_ban_jail(data, ssh_port)

# sshd's settings follow what the host's OpenSSH supports, and must keep every key of
# the deploy user working (sshd_settings may change socle's values).
try:
    hardened = sshd_policy.hardened_settings(
        sshd_policy.OpenSsh.from_fact(host.get_fact(OpenSshServer)),
        deploy_user=deploy_user,
        password_login=bool(data.get("ssh_password_login", False)),
    )
except ValueError as error:
    raise DeployError(f"{host.name}: {error}") from None
sshd_settings = sshd_policy.apply_overrides(hardened, data.get("sshd_settings"))
deploy_user_groups: list[str] = host.get_fact(UserGroups, user=deploy_user)
sshd_policy.check_keeps_deploy_login(
    sshd_settings, deploy_user, deploy_user_groups, authorized_keys, host.name
)

installed = host.get_fact(DebPackages)
# Keep whichever time daemon the image ships: installing timesyncd would remove chrony.
time_daemon = next(
    (name for name in ("chrony", "ntpsec", "ntp") if name in installed), "systemd-timesyncd"
)
packages = [
    "openssh-server",
    "ufw",
    "unattended-upgrades",
    time_daemon,
    # Bans repeated SSH failures; reads sshd's log from the journal.
    "fail2ban",
    "python3-systemd",
    "auditd",
    "needrestart",
    # Password quality for the local passwords that remain (console, sudo for others).
    "libpam-pwquality",
    # Checks installed files against their packages' checksums, weekly.
    "debsums",
]
# Before auditd is installed, so that its first start is skipped inside a container.
files.directory(
    name="auditd unit drop-in folder",
    path="/etc/systemd/system/auditd.service.d",
    user="root",
    group="root",
    mode="755",
)
text_files.file(
    name="auditd runs where the kernel lets it (not in a container)",
    path="/etc/systemd/system/auditd.service.d/10-socle.conf",
    content=host_hardening.AUDITD_IN_CONTAINERS,
    then="systemctl daemon-reload && (systemctl reset-failed auditd 2>/dev/null || true)",
)
missing = [name for name in packages if name not in installed]
if missing:
    apt.packages(name="Baseline packages", packages=missing, update=True, no_recommends=True)

sshd.settings(name="SSH: keys only, no root login, modern algorithms", settings=sshd_settings)
files.file(
    name="sshd's main configuration readable by root only",
    path="/etc/ssh/sshd_config",
    user="root",
    group="root",
    mode="600",
)
sshd.host_keys(
    name="SSH host keys: Ed25519 and RSA only", keep=list(sshd_policy.HOST_KEY_TYPES)
)
for path in ("/etc/issue", "/etc/issue.net"):
    text_files.file(name=f"Login banner {path}", path=path, content=banner)

text_files.file(
    name="SSH: repeated failures banned, never from the VPN",
    path="/etc/fail2ban/jail.local",
    content=ssh_ban_jail,
    then="fail2ban-client -t >/dev/null && systemctl restart fail2ban",
)
systemd.service(name="fail2ban running", service="fail2ban", running=True, enabled=True)

files.line(
    name="debsums checks the installed files weekly",
    path="/etc/default/debsums",
    line="^CRON_CHECK=.*$",
    replace="CRON_CHECK=weekly",
)
text_files.file(
    name="Unattended security upgrades, daily",
    path="/etc/apt/apt.conf.d/20auto-upgrades",
    content='APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n',
)
text_files.file(
    name="needrestart restarts what upgrades left on old libraries",
    path="/etc/needrestart/conf.d/socle.conf",
    content=host_hardening.NEEDRESTART,
)

sysctl_lines = [f"{key} = {value}" for key, value in data.get("sysctl_hardening", {}).items()]
text_files.file(
    name="Kernel hardening settings",
    path="/etc/sysctl.d/60-socle-hardening.conf",
    content="# Managed by socle.\n" + "".join(line + "\n" for line in sysctl_lines),
    then="sysctl -q -p /etc/sysctl.d/60-socle-hardening.conf",
)
# UFW applies its own sysctl file whenever it starts, after systemd-sysctl: point it at
# socle's, or it turns log_martians back off at every boot.
files.line(
    name="UFW applies socle's kernel settings, not its own",
    path="/etc/default/ufw",
    line="^IPT_SYSCTL=.*$",
    replace="IPT_SYSCTL=/etc/sysctl.d/60-socle-hardening.conf",
)

text_files.file(
    name="Unused kernel modules never load",
    path="/etc/modprobe.d/socle-blacklist.conf",
    content=host_hardening.module_blacklist(),
)

text_files.file(
    name="No core dumps (login sessions)",
    path="/etc/security/limits.d/socle-no-core.conf",
    content=host_hardening.NO_CORE_DUMPS_LIMITS,
)
for folder in ("/etc/systemd/coredump.conf.d", "/etc/systemd/system.conf.d"):
    files.directory(name=f"{folder}", path=folder, user="root", group="root", mode="755")
text_files.file(
    name="No core dumps (systemd-coredump)",
    path="/etc/systemd/coredump.conf.d/socle.conf",
    content=host_hardening.NO_CORE_DUMPS_SYSTEMD,
)
text_files.file(
    name="No core dumps (services)",
    path="/etc/systemd/system.conf.d/socle-no-core.conf",
    content=host_hardening.NO_CORE_DUMPS_SERVICES,
    then="systemctl daemon-reexec",
)

if "apport" in installed:
    # Ubuntu's crash reporter writes crash reports, process memory included, to /var/crash.
    systemd.service(
        name="No crash reports (apport)", service="apport", running=False, enabled=False
    )

text_files.file(
    name="Login shells: umask 027, no core dumps, idle timeout",
    path="/etc/profile.d/socle-hardening.sh",
    content=host_hardening.login_shell_profile(),
)
files.line(
    name="Default umask 027 for new sessions and home folders",
    path="/etc/login.defs",
    line=r"^UMASK\s.*$",
    replace=f"UMASK\t\t{host_hardening.DEFAULT_UMASK}",
)
for keyword in ("SHA_CRYPT_MIN_ROUNDS", "SHA_CRYPT_MAX_ROUNDS"):
    # What chpasswd and newusers hash with SHA-512 costs 640000 rounds (DevSec).
    files.line(
        name=f"{keyword} 640000",
        path="/etc/login.defs",
        line=rf"^{keyword}\s.*$",
        replace=f"{keyword}\t640000",
    )
files.line(
    name="Passwords not changed again within a day (new accounts)",
    path="/etc/login.defs",
    line=r"^PASS_MIN_DAYS\s.*$",
    replace="PASS_MIN_DAYS\t1",
)
# needrestart depends on binutils, which brings the assembler: root only. A binutils
# upgrade puts the mode back; the next deploy takes it away again.
if "binutils" in installed or "needrestart" in missing:
    files.file(
        name="The assembler runs for root only",
        path=f"/usr/bin/{host.get_fact(Arch)}-linux-gnu-as",
        user="root",
        group="root",
        mode="750",
    )

text_files.file(
    name="Audit rules: identity and privilege files",
    path="/etc/audit/rules.d/50-socle.rules",
    content=host_hardening.audit_rules(),
    mode="640",
    then="if systemctl is-active -q auditd; then augenrules --load; fi",
)
# Enabled only: inside a container its condition skips it, and `running` would try again
# on every run.
systemd.service(name="auditd enabled", service="auditd", enabled=True, running=None)

if time_daemon == "systemd-timesyncd":
    # Enabled only: timesyncd does not start inside a container, and on a VPS it
    # starts at boot.
    systemd.service(
        name="Time synchronisation", service="systemd-timesyncd", enabled=True, running=None
    )

ufw.firewall(
    name="Firewall: deny incoming, the public surface and the VPN's admin ports",
    rules=firewall_rules(data),
    ssh_port=ssh_port,
)
