"""Stand-ins for what cannot run on the test machines (never shipped with socle)."""
