"""The host's hardening files, rendered from inventory data: what phase 1 writes besides sshd.

Each function returns the whole text of one file. What k3s, WireGuard or pyinfra need is
left out on purpose, and each file says so beside the settings, so a later reader does
not "finish" the hardening by breaking the platform.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from socle.inventory_checks import InventoryDataError, vpn_interface

HEADER = "# Managed by socle: changes made here are overwritten."

# Kernel modules nothing on the node uses, with why each can go (CIS Ubuntu 24.04 1.1.1
# and 3.2, DevSec os-hardening, Lynis NETW-3200, USB-1000, STRG-1846).
UNUSED_KERNEL_MODULES: dict[str, str] = {
    "dccp": "network protocol nothing here speaks",
    "sctp": "network protocol nothing here speaks",
    "rds": "network protocol nothing here speaks",
    "tipc": "network protocol nothing here speaks",
    "cramfs": "filesystem no VPS disk carries",
    "freevxfs": "filesystem no VPS disk carries",
    "jffs2": "filesystem no VPS disk carries",
    "hfs": "filesystem no VPS disk carries",
    "hfsplus": "filesystem no VPS disk carries",
    "udf": "filesystem no VPS disk carries",
    "usb-storage": "a VPS has no USB port",
    "firewire-core": "a VPS has no FireWire port",
    "firewire-ohci": "a VPS has no FireWire port",
    "firewire-sbp2": "a VPS has no FireWire port",
}
# Kept loadable, whatever the baselines say, because the platform needs them.
KERNEL_MODULES_KEPT: dict[str, str] = {
    "overlay": "k3s's containerd stores container layers on overlayfs",
    "br_netfilter": "k3s passes bridged pod traffic through iptables (kube-proxy, policies)",
    "vxlan": "flannel, k3s's pod network, runs on VXLAN",
    "wireguard": "the admins' VPN (phase 2)",
    "squashfs": "snapd on Ubuntu mounts its snaps from squashfs images",
}

AUDIT_RULES: tuple[tuple[str, str], ...] = (
    ("/etc/passwd", "identity"),
    ("/etc/group", "identity"),
    ("/etc/shadow", "identity"),
    ("/etc/gshadow", "identity"),
    ("/etc/security/opasswd", "identity"),
    ("/etc/sudoers", "privilege"),
    ("/etc/sudoers.d", "privilege"),
    ("/etc/ssh/sshd_config", "sshd"),
    ("/etc/ssh/sshd_config.d", "sshd"),
)

DEFAULT_BANNER = (
    "Authorised access only. This system is private: activity on it is monitored and\n"
    "logged. Unauthorised use is prohibited and may be reported to the authorities as\n"
    "evidence of criminal activity.\n"
)
_BANNER_LINE = re.compile(r"^[\x20-\x5b\x5d-\x7e]*$")  # printable ASCII, no backslash
DEFAULT_UMASK = "027"
IDLE_SHELL_TIMEOUT_S = 900


def module_blacklist() -> str:
    """Return ``/etc/modprobe.d/socle-blacklist.conf``: unused modules cannot load."""
    lines = [
        HEADER,
        "# Modules nothing on this node uses: never loaded, not even on request (`install`",
        "# runs /bin/true instead of loading it; the form Lynis 3.0 recognises).",
    ]
    for module, reason in UNUSED_KERNEL_MODULES.items():
        lines += [f"# {module}: {reason}", f"blacklist {module}", f"install {module} /bin/true"]
    lines.append("# Left loadable on purpose:")
    lines += [f"#   {module}: {reason}" for module, reason in KERNEL_MODULES_KEPT.items()]
    return "\n".join(lines) + "\n"


def audit_rules() -> str:
    """Return ``/etc/audit/rules.d/50-socle.rules``: writes to identity and privilege files."""
    lines = [HEADER, "# Who changed accounts, sudo rights or sshd's configuration, and when."]
    lines += [f"-w {path} -p wa -k {key}" for path, key in AUDIT_RULES]
    return "\n".join(lines) + "\n"


AUDITD_IN_CONTAINERS = (
    "[Unit]\n"
    "# The kernel serves its audit interface to the initial PID namespace only: inside a\n"
    "# container auditd can only fail. On a VM or a bare-metal host it runs.\n"
    "ConditionVirtualization=!container\n"
)

NO_CORE_DUMPS_LIMITS = (
    f"{HEADER}\n# No core dumps: they hold process memory, secrets included.\n"
    "* hard core 0\n* soft core 0\n"
)
NO_CORE_DUMPS_SYSTEMD = f"{HEADER}\n[Coredump]\nStorage=none\nProcessSizeMax=0\n"
NO_CORE_DUMPS_SERVICES = (
    f"{HEADER}\n# Services too start with no core dumps.\n[Manager]\nDefaultLimitCORE=0\n"
)

NEEDRESTART = (
    f"{HEADER}\n"
    "# Restart the services that still run replaced libraries after every upgrade,\n"
    "# unattended ones included, instead of only listing them.\n"
    "$nrconf{restart} = 'a';\n"
)


def login_shell_profile(umask: str = DEFAULT_UMASK) -> str:
    """Return ``/etc/profile.d/socle-hardening.sh``: admins' login shells."""
    if not re.fullmatch(r"0?[0-7]{3}", umask):
        raise ValueError(f"invalid umask: {umask!r}")
    return (
        f"{HEADER}\n"
        "# New files readable by their group at most, never by everyone.\n"
        f"umask {umask}\n"
        "# No core dumps from interactive work.\n"
        "ulimit -c 0\n"
        "# An idle root shell left open does not stay open.\n"
        f"TMOUT={IDLE_SHELL_TIMEOUT_S}\nreadonly TMOUT\nexport TMOUT\n"
    )


def login_banner(data: Mapping[str, Any]) -> str:
    """Return the legal banner (``login_banner``, or socle's), shown before any login.

    Refused, naming the key: anything but printable ASCII lines, and backslashes (getty
    reads escapes in ``/etc/issue``).
    """
    text = data.get("login_banner", DEFAULT_BANNER)
    if not isinstance(text, str) or not text.strip():
        raise InventoryDataError("login_banner", f"expected some text, got {text!r}")
    lines = text.strip("\n").split("\n")
    for number, line in enumerate(lines, start=1):
        if not _BANNER_LINE.match(line):
            raise InventoryDataError(
                "login_banner", f"line {number} holds a backslash or a non-printable character"
            )
    return "\n".join(lines) + "\n"


def never_banned(data: Mapping[str, Any]) -> list[str]:
    """Return the networks the SSH ban never applies to: loopback, the VPN, and each
    address of ``ssh_never_ban`` (the operators' own fixed addresses), checked."""
    networks = ["127.0.0.0/8", "::1/128", str(vpn_interface(data).network)]
    extra = data.get("ssh_never_ban", [])
    if not isinstance(extra, list | tuple):
        raise InventoryDataError("ssh_never_ban", f"expected a list of addresses, got {extra!r}")
    for index, value in enumerate(extra):
        try:
            network = ipaddress.ip_network(value, strict=False)
        except (ValueError, TypeError):
            raise InventoryDataError(
                f"ssh_never_ban[{index}]", f"{value!r} is not an address or network"
            ) from None
        if str(network) not in networks:
            networks.append(str(network))
    return networks


def ssh_ban_jail(data: Mapping[str, Any], ssh_port: int) -> str:
    """Return ``/etc/fail2ban/jail.local``: repeated SSH failures get banned.

    The VPN's range is never banned, so an admin banned on the public side still gets
    in through the VPN; ``ssh_never_ban`` adds the operators' own addresses.
    """
    return (
        f"{HEADER}\n"
        "[sshd]\n"
        "enabled = true\n"
        "# sshd logs to the journal only (no /var/log/auth.log on Debian 12 or a minimal\n"
        "# Ubuntu).\n"
        "backend = systemd\n"
        "# aggressive: also counts clients that leave without a usable key (password guessers\n"
        "# on a key-only server), refused algorithms and connections dropped before login.\n"
        "mode = aggressive\n"
        f"port = {ssh_port}\n"
        "maxretry = 5\n"
        "findtime = 10m\n"
        "bantime = 1h\n"
        "bantime.increment = true\n"
        "bantime.maxtime = 1w\n"
        "# Its own iptables chain, apart from UFW's rules, which socle keeps exact.\n"
        "banaction = iptables-multiport\n"
        "# Never banned: loopback, the VPN (the admins' way in) and ssh_never_ban.\n"
        f"ignoreip = {' '.join(never_banned(data))}\n"
    )
