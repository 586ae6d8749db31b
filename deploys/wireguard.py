"""Phase 2: the WireGuard VPN on wg0, with admin ports open on the VPN only.

    pyinfra inventories/prod.py deploys/wireguard.py

The server's private key comes from the SOPS file named by
``wireguard_private_key_sops`` (decrypted here, on the operator's machine), or is
generated on the node on the first run and kept afterwards.
"""

from pyinfra import host
from pyinfra.api import HiddenValue
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from operations import text_files, ufw, wireguard
from operations.wireguard import WireguardPeer
from socle import inventory_checks
from socle.firewall_plan import firewall_rules
from socle.sops_secrets import decrypt_value

data = host.data.dict()
inventory_checks.check_firewall(data)
inventory_checks.check_wireguard(data)

private_key = None
if data.get("wireguard_private_key_sops"):
    private_key = HiddenValue(
        decrypt_value(data["wireguard_private_key_sops"], "wireguard_private_key")
    )

installed = host.get_fact(DebPackages)
if "wireguard-tools" not in installed:
    apt.packages(name="WireGuard tools", packages=["wireguard-tools"], update=True)

text_files.file(
    name="Forward packets from the VPN to the cluster's ranges",
    path="/etc/sysctl.d/60-socle-forwarding.conf",
    content="# Managed by socle.\nnet.ipv4.ip_forward = 1\n",
    then="sysctl -q -p /etc/sysctl.d/60-socle-forwarding.conf",
)

ufw.firewall(
    name="Firewall: deny incoming, the public surface and the VPN's admin ports",
    rules=firewall_rules(data),
    ssh_port=inventory_checks.ssh_port(data),
)

wireguard.interface(
    name="WireGuard interface and peers",
    interface=data.get("wireguard_interface", inventory_checks.DEFAULT_INTERFACE),
    address=data["wireguard_address"],
    listen_port=data.get("wireguard_port", inventory_checks.DEFAULT_WIREGUARD_PORT),
    peers=[
        WireguardPeer(name=peer["name"], public_key=peer["public_key"], address=peer["address"])
        for peer in data.get("wireguard_peers", [])
    ],
    private_key=private_key,
)
