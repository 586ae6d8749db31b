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
    "net.ipv4.conf.all.accept_source_route": 0,
    "net.ipv4.conf.all.log_martians": 1,
    "net.ipv4.icmp_echo_ignore_broadcasts": 1,
    "net.ipv4.tcp_syncookies": 1,
    "net.ipv6.conf.all.accept_redirects": 0,
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
