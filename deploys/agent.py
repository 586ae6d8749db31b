"""Phase 7: the node agent (backups, snapshots, drills, metrics, mail) under systemd.

    pyinfra inventories/prod.py deploys/agent.py

Its settings (`agent_settings`) are checked with the agent's own parser and its secrets
(`agent_secrets`) decrypted from SOPS on the operator's machine before anything on the
node changes. The agent is built from this repository's `agent/` folder.
"""

from pathlib import Path

from pyinfra import host
from pyinfra.api import HiddenValue
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from operations import agent_package, secret_files, text_files
from socle.agent_settings import agent_secrets, render_agent_config

data = host.data.dict()
config_text = render_agent_config(data.get("agent_settings", {}))
secrets = {
    path: HiddenValue(value) for path, value in agent_secrets(data.get("agent_secrets", [])).items()
}

installed = host.get_fact(DebPackages)
# pg_dump must be at least the server's major version: the pinned PostgreSQL major.
packages = ["python3-venv", f"postgresql-client-{data.get('postgresql_major', 16)}"]
apt.packages(
    name="Agent packages",
    packages=packages,
    update=any(name not in installed for name in packages),
)

for path in ("/etc/socle", "/var/backups/socle", "/var/lib/socle-agent"):
    files.directory(name=f"{path}, root only", path=path, user="root", group="root", mode="700")

package = agent_package.package(name="socle-agent from this repository", source_dir="agent")

config = text_files.file(
    name="Agent configuration",
    path="/etc/socle/agent.toml",
    content=config_text,
    mode="600",
)

changed_secrets = [
    secret_files.secret_file(name=f"Agent secret {path}", path=path, secret=value)
    for path, value in sorted(secrets.items())
]

unit = text_files.file(
    name="Agent systemd unit",
    path="/etc/systemd/system/socle-agent.service",
    content=Path("agent/systemd/socle-agent.service").read_text(),
)
files.directory(
    name="Agent unit drop-in folder",
    path="/etc/systemd/system/socle-agent.service.d",
    user="root",
    group="root",
    mode="755",
)
ordering = text_files.file(
    name="Agent starts after the VPN it serves metrics on",
    path="/etc/systemd/system/socle-agent.service.d/10-after-vpn.conf",
    content=(
        "[Unit]\n"
        f"Wants=wg-quick@{data.get('wireguard_interface', 'wg0')}.service\n"
        f"After=wg-quick@{data.get('wireguard_interface', 'wg0')}.service\n"
    ),
)
metrics = data.get("agent_settings", {}).get("metrics", {})
metrics_port = metrics.get("port", 9464) if metrics.get("enabled", True) else None
# The unit allows binding the default metrics port only; this one replaces that list.
socket_bind = text_files.file(
    name="Agent may listen on its metrics port only",
    path="/etc/systemd/system/socle-agent.service.d/20-metrics-port.conf",
    content=(
        "[Service]\nSocketBindAllow=\n"
        + (f"SocketBindAllow=tcp:{int(metrics_port)}\n" if metrics_port else "")
    ),
)
systemd.daemon_reload(
    name="systemd reads the agent's unit", _if=any_changed(unit, ordering, socket_bind)
)

# Restarted first when anything changed (a stopped agent is only started), so a first
# deploy starts it once instead of starting and then restarting it.
systemd.service(
    name="Agent restarted on a new version, configuration or secret",
    service="socle-agent.service",
    running=True,
    restarted=True,
    _if=any_changed(package, config, unit, ordering, socket_bind, *changed_secrets),
)
systemd.service(
    name="Agent enabled and running",
    service="socle-agent.service",
    running=True,
    enabled=True,
)
