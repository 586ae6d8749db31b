"""Off-site copies of every backup with restic, restores and drills from there.

One module per job, plugged into the agent by `socle_agent.sources.offsite`:

- `settings`: the `[offsite]` table of the agent's configuration;
- `environment`: the node's off-site settings file written by deploys/offsite.py;
- `restic`: every restic call, with its deadline, its password never on a command line;
- `copy`: job `offsite_copy`, the backups not yet off-site sent with their tags;
- `check`: job `offsite_check`, `restic check --read-data-subset`;
- `fetch`: a backup fetched from off-site into a scratch catalogue, checked;
- `drill`: job `offsite_drill`, the newest copies fetched and drilled like local ones;
- `records`: what the jobs keep in the agent's state, for the metrics.
"""
