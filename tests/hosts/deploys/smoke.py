"""A small deploy used by the harness' own host test: a user, files and a service.

Not a phase of socle: it proves that a deploy runs over SSH with sudo on a test host.
"""

from io import StringIO

from pyinfra import host
from pyinfra.operations import files, server, systemd

SMOKE_UNIT = """\
[Unit]
Description=socle smoke-test service

[Service]
User=socle-smoke
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""

server.user(
    name="A system user for the smoke deploy",
    user="socle-smoke",
    system=True,
    home="/var/lib/socle-smoke",
    shell="/usr/sbin/nologin",
)

files.directory(
    name="A directory readable by root and the smoke group only",
    path="/etc/socle-smoke",
    user="root",
    group="socle-smoke",
    mode="0750",
)

files.put(
    name="A file with the host's inventory name",
    src=StringIO(f"host={host.name}\n"),
    dest="/etc/socle-smoke/host",
    user="root",
    group="socle-smoke",
    mode="0640",
)

unit = files.put(
    name="The smoke service's unit",
    src=StringIO(SMOKE_UNIT),
    dest="/etc/systemd/system/socle-smoke.service",
    mode="0644",
)

systemd.daemon_reload(
    name="systemd reloaded when the unit changed",
    _if=unit.did_change,
)

systemd.service(
    name="The smoke service enabled and running",
    service="socle-smoke.service",
    running=True,
    enabled=True,
)
