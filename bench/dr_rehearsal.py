"""Benchmark: the disaster-recovery rehearsal's total, step by step, on fresh test hosts.

    python bench/dr_rehearsal.py [--backups offsite]

Host A runs the whole platform (stand-in k3s and PostgreSQL, as in the host tests) and
takes a backup and a snapshot; then `socle dr-rehearsal` rebuilds B from them. The steps'
times are printed as the rehearsal reports them; B's provisioning is a cold deploy. With
`--backups offsite`, A also sends its copies off-site and B restores from there.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.hosts import Harness  # noqa: E402
from tests.hosts.dr_pair import rehearsal_pair  # noqa: E402


def main() -> int:
    """Set the pair up, rehearse, print each step's time and the total."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backups", choices=("local", "offsite"), default="local")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="socle-bench-dr-"))
    with Harness() as harness, rehearsal_pair(harness, work, prefix="bench-dr") as pair:
        pair.back_up_a(offsite=args.backups == "offsite")
        started = time.monotonic()
        done = pair.rehearse("--backups", args.backups)
        wall = time.monotonic() - started
    steps = re.findall(r"^\| (.+?) \| (done|FAILED) \| ([\d.]+) s \|", done.stdout, re.M)
    print(f"{'step':<40} {'outcome':<8} time")
    for name, outcome, seconds in steps:
        print(f"{name:<40} {outcome:<8} {float(seconds):6.1f} s")
    print(f"{'rehearsal total (wall)':<40} {'':<8} {wall:6.1f} s")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
