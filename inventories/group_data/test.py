"""Data for the test hosts: the same keys as production, with test values.

The peer below has a public key whose private half was thrown away: tests that need a
working peer make a key pair at run time and give it as host data, which takes
precedence over this file.
"""

ssh_port = 22
ssh_password_login = False
ufw_public_tcp = [22, 80, 443]

# Test hosts share the kernel of the machine running them: only per-network-namespace
# settings here, so the tests never change the machine's own kernel.
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
}

wireguard_interface = "wg0"
wireguard_port = 51820
wireguard_address = "10.8.0.1/24"
wireguard_admin_tcp_ports = [6443, 5432, 9100, 9090, 9093, 3000, 9464]
wireguard_peers = [
    {
        "name": "peer",
        "public_key": "PXaM7m/LQrBWZmw5kw0RLsTJNXif4ZbfMfdtNYNzOAw=",
        "address": "10.8.0.2",
    },
]

cluster_pod_cidr = "10.42.0.0/16"
cluster_service_cidr = "10.43.0.0/16"

# Phase 7: the agent. Test hosts run Debian 12, whose PostgreSQL is 15; the node's
# PostgreSQL there is a stand-in (tests/hosts/deploys/postgres_standin.py) reached on
# loopback. The test gives `agent_secrets` (a SOPS file it makes) as host data.
postgresql_major = 15
agent_settings = {
    "schedule": {
        "postgres_backup": "daily at 02:30",
        "postgres_drill": "weekly on sunday at 04:00",
        "disk_check": "every 15 minutes",
        "prune": "daily at 06:00",
    },
    "postgres": {
        "host": "127.0.0.1",
        "port": 5432,
        "user": "postgres",
        "password_file": "/etc/socle/postgres-password",
        "databases": ["app"],
        "bin_dir": "/usr/lib/postgresql/15/bin",
    },
    "drill": {
        "rto_seconds": {"postgres": 600, "k3s": 600},
        "rpo_seconds": {"postgres": 93600, "k3s": 25200},
    },
    "metrics": {"listen": "10.8.0.1", "port": 9464},
    "mail": {
        "enabled": False,
        "host": "127.0.0.1",
        "from": "socle-agent@test-node.invalid",
        "to": ["ops@test-node.invalid"],
    },
}
agent_secrets: list[dict[str, str]] = []

# Phases 4 to 6 on test hosts, where k3s is the stand-in: the repository Argo CD would
# follow and where Alertmanager would mail (nothing is fetched or sent there). The tests
# give the SOPS references of `grafana_admin` and `postgresql_credentials` as host data,
# from SOPS files they make.
gitops_repository = {"url": "https://git.socle.invalid/ops/socle.git", "revision": "main"}
alerting = {
    "smarthost": "127.0.0.1:25",
    "from": "alertmanager@test-node.invalid",
    "to": ["ops@test-node.invalid"],
    "require_tls": False,
    "heartbeat_url": "https://heartbeat.socle.invalid/ping/test-node",
}
