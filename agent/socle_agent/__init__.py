"""socle's node agent: backups, snapshots, drills, metrics and mail, run by systemd."""

__version__ = "0.1.0"
