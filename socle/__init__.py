"""What the deploys, operations and facts import: pure logic over inventory data.

Inventory checks (lock-out guards), the firewall plan, the agent's settings, SOPS
decryption, WireGuard keys and the pinned versions. This package imports nothing from
``operations``, ``facts``, ``deploys`` or the command line (``socle_cli``), so the layers
read in one direction: socle, then facts, then operations, then deploys and socle_cli.
"""
