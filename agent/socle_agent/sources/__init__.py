"""Data sources the agent backs up; adding a source is adding a module here.

A source module may declare:

- `JOBS`: a mapping of job name (e.g. "postgres_backup") to `jobs.JobSpec`, picked up by
  `jobs.registry()` and so by the daemon's schedule and by `socle-agent` subcommands
  named `<action> <kind>` (job `<kind>_<action>`: `backup postgres`, `snapshot k3s`,
  `drill postgres`, ...).
- `add_restore_arguments(parser)` and `restore(config, args) -> int`: the
  `socle-agent restore <kind>` subcommand.
"""
