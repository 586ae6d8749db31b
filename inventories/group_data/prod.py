"""Production data: SSH, firewall, kernel settings, the VPN, k3s, the agent.

Nothing secret here. The WireGuard public keys marked PLACEHOLDER must be replaced by
each admin's real public key (`wg genkey | tee key | wg pubkey`); until then the deploy
refuses to run, naming the key to fix.
"""

# Phase 1: SSH and the public surface.
ssh_port = 22
# Password login goes off only if the deploy user already has a key on the host.
ssh_password_login = False
ufw_public_tcp = [22, 80, 443]
# Repeated SSH failures get an address banned (fail2ban); the VPN range never is. Add the
# operators' own fixed public addresses here so they are never banned either.
ssh_never_ban: list[str] = []
# socle's sshd settings (docs/hardening.md) suit most; a value here replaces socle's for
# its keyword. The deploy refuses any that would refuse a key of the deploy user.
# sshd_settings = {"AllowUsers": "ubuntu"}
# The legal banner shown before login (/etc/issue, /etc/issue.net); socle's by default.
# login_banner = "Authorised access only. ..."

# IP forwarding is not here: phase 2 turns it on, the VPN and k3s need it.
sysctl_hardening = {
    "net.ipv4.conf.all.accept_redirects": 0,
    "net.ipv4.conf.default.accept_redirects": 0,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
    "net.ipv4.conf.all.accept_source_route": 0,
    "net.ipv4.conf.default.accept_source_route": 0,
    "net.ipv4.conf.all.rp_filter": 1,
    "net.ipv4.conf.all.log_martians": 1,
    "net.ipv4.conf.default.log_martians": 1,
    "net.ipv4.icmp_echo_ignore_broadcasts": 1,
    "net.ipv4.icmp_ignore_bogus_error_responses": 1,
    "net.ipv4.tcp_syncookies": 1,
    "net.ipv6.conf.all.accept_redirects": 0,
    "net.ipv6.conf.default.accept_redirects": 0,
    "net.ipv6.conf.all.accept_source_route": 0,
    "net.ipv6.conf.default.accept_source_route": 0,
    "kernel.kptr_restrict": 2,
    "kernel.dmesg_restrict": 1,
    "kernel.yama.ptrace_scope": 1,
    "kernel.perf_event_paranoid": 3,
    "kernel.unprivileged_bpf_disabled": 1,
    "net.core.bpf_jit_harden": 2,
    "kernel.randomize_va_space": 2,
    "kernel.sysrq": 0,
    "dev.tty.ldisc_autoload": 0,
    "fs.protected_hardlinks": 1,
    "fs.protected_symlinks": 1,
    "fs.protected_fifos": 2,
    "fs.protected_regular": 2,
    "fs.suid_dumpable": 0,
}

# Phase 2: the VPN. Admin ports: k3s API, PostgreSQL, node exporter, Prometheus,
# Alertmanager, Grafana, the agent's metrics.
wireguard_interface = "wg0"
wireguard_port = 51820
wireguard_address = "10.8.0.1/24"
wireguard_admin_tcp_ports = [6443, 5432, 9100, 9090, 9093, 3000, 9464]
# The name admins' clients connect to; the SSH address when unset.
# wireguard_endpoint = "vpn.example.net"
# The server's private key, SOPS-encrypted for the operators' age keys; when unset the
# node generates its own on the first run and keeps it.
# wireguard_private_key_sops = "secrets/prod/wireguard.sops.yaml"
wireguard_peers = [
    {
        "name": "admin1",
        "public_key": "PLACEHOLDER: admin1's WireGuard public key (wg genkey | wg pubkey)",
        "address": "10.8.0.2",
    },
    {
        "name": "admin2",
        "public_key": "PLACEHOLDER: admin2's WireGuard public key",
        "address": "10.8.0.3",
    },
]

# The provider's snapshot of the VPS (`socle snapshot-vps`, and phase 3 before an upgrade
# when snapshot_before_upgrade is on). The API keys are read from SOPS on the operator's
# machine only (see secrets/README.md); OVH keeps one snapshot per VPS, a new one replaces it.
# ovh_vps = {
#     "service_name": "vps-1a2b3c4d.vps.ovh.net",
#     "endpoint": "ovh-eu",
#     "sops_file": "secrets/prod.sops.yaml",
#     "snapshot_before_upgrade": True,
#     "timeout_seconds": 3600,
# }

# The cluster's ranges (k3s defaults), routed to admins over the VPN.
cluster_pod_cidr = "10.42.0.0/16"
cluster_service_cidr = "10.43.0.0/16"

# Phase 3: k3s, pinned in versions.toml (deploys/k3s.py). Without an air-gap folder the
# node downloads the pinned release itself and pulls images; with one, the release's
# binary and images archive are uploaded from this folder on the operator's machine.
# k3s_airgap_dir = "/srv/k3s-release/v1.33.2+k3s1"
# Seconds to wait for the node to be Ready after a start or an upgrade.
k3s_ready_timeout = 300
# The proof workload behind Traefik: True installs it, False removes it.
k3s_test_ingress = False
k3s_test_ingress_host = "test-ingress.socle.invalid"
# What may be public past UFW: Traefik's LoadBalancer on 80 and 443, and nothing else.
k3s_exposure_allowed = [{"namespace": "kube-system", "service": "traefik", "ports": [80, 443]}]

# Phase 7: the node agent. PostgreSQL runs in the cluster: the agent reads the Service's
# address and the Secret's password with its own ServiceAccount. pg_dump on the node
# must be at least the server's major version.
postgresql_major = 16
agent_settings = {
    "schedule": {
        "postgres_backup": "daily at 02:30",
        "k3s_snapshot": "every 6 hours",
        "postgres_drill": "weekly on sunday at 04:00",
        "k3s_drill": "weekly on sunday at 05:00",
        "disk_check": "every 15 minutes",
        "prune": "daily at 06:00",
    },
    "postgres": {
        "user": "postgres",
        "databases": [],
        "bin_dir": "/usr/lib/postgresql/16/bin",
        "kubernetes": {
            "service": "postgresql",
            "secret": "postgresql-credentials",
            "namespace": "database",
            "kubeconfig": "/etc/socle/agent-kubeconfig",
        },
    },
    "retention": {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6},
    "drill": {
        "rto_seconds": {"postgres": 1800, "k3s": 900},
        "rpo_seconds": {"postgres": 93600, "k3s": 25200},
    },
    # On the VPN address: reachable by admins and the cluster, never from the public side.
    "metrics": {"listen": "10.8.0.1", "port": 9464},
    "mail": {
        "host": "PLACEHOLDER: your SMTP relay's host name",
        "port": 587,
        "security": "starttls",
        "from": "PLACEHOLDER: the sender address of the agent's mail",
        "to": ["PLACEHOLDER: who is mailed when a job fails"],
        "secrets_file": "/etc/socle/mail-secrets.toml",
    },
}
# Off-site copies (docs/offsite.md): the repository on another machine, which this node
# can add to but not delete from. One destination; its secrets in SOPS (offsite_restic_
# password, and offsite_rest_password, offsite_ssh_private_key or the S3 keys).
# offsite = {
#     "destination": "rest",                      # rest, sftp or s3
#     "rest": {"url": "https://backup.example.net:8000/vps1/", "user": "vps1"},
#     # "sftp": {"host": "backup.example.net", "user": "socle-vps1",
#     #          "host_key": "ssh-ed25519 AAAA..."},
#     # "s3": {"endpoint": "https://s3.gra.io.cloud.ovh.net", "bucket": "socle-backups",
#     #        "prefix": "vps1", "region": "gra"},
#     "sops_file": "secrets/prod.sops.yaml",
#     "limit_upload_kib": 0,                      # restic --limit-upload, 0: no limit
#     # `socle offsite prune`, from your machine with full rights:
#     "operator": {"repository": "sftp:socle-vps1@backup.example.net:/srv/socle-restic/vps1"},
# }
# Once the host has an `offsite` table (deploys/offsite.py), the agent sends every backup
# there after it is taken; add its jobs:
# agent_settings["offsite"] = {"check_read_data_percent": 5}
# agent_settings["schedule"] |= {
#     "offsite_copy": "every 6 hours",                # catches up what a copy missed
#     "offsite_check": "weekly on saturday at 03:00",
#     "offsite_drill": "weekly on sunday at 06:00",   # restored from there, timed
# }
# Decrypted from SOPS on the operator's machine at deploy time, written 0600 on the node.
agent_secrets = [
    {
        "path": "/etc/socle/mail-secrets.toml",
        "sops_file": "secrets/prod.sops.yaml",
        "key": "agent_mail_secrets_toml",
    },
]

# Phases 4 to 6: Argo CD syncs gitops/ from this repository (app of apps); the deploys
# create the Secrets the workloads read from SOPS. PLACEHOLDER values below.
gitops_repository = {
    "url": "https://git.example.org/ops/socle.git",
    "revision": "main",
    # A private repository: the SOPS file and key of an access token (or ssh_private_key).
    # "username": "socle",
    # "password_sops": {"file": "secrets/prod.sops.yaml", "key": "gitops_token"},
}
# Alertmanager: level-1 alerts by mail; the Watchdog heartbeat to an external dead man's
# switch (a healthchecks-style ping URL) that alarms when the heartbeat stops, since on one
# node monitoring dies with the node it watches.
alerting = {
    "smarthost": "smtp.example.org:587",
    "from": "alertmanager@example.org",
    "to": ["ops@example.org"],
    "username": "alertmanager@example.org",
    "password_sops": {"file": "secrets/prod.sops.yaml", "key": "alertmanager_smtp_password"},
    "heartbeat_url": "https://heartbeat.example.org/ping/PLACEHOLDER",
}
grafana_admin = {
    "user": "admin",
    "password_sops": {"file": "secrets/prod.sops.yaml", "key": "grafana_admin_password"},
}
# PostgreSQL's superuser password, made into the Secret database/postgresql-credentials.
postgresql_credentials = {
    "password_sops": {"file": "secrets/prod.sops.yaml", "key": "postgresql_password"},
}
