"""Time the whole deploy on a fresh test host (cold), its no-op re-run, each phase's time in
both, and `socle verify` on the healthy host.

    python bench/phases.py [--rounds 3] [--verify-runs 3]

Each round starts a fresh node and an admin on its VPN (so the WireGuard check has a
handshake), then runs `deploys/all.py` cold and again (checked to change nothing), then
`socle verify` several times. k3s is the stand-in of tests/standins (air-gap folder and
versions file made here) playing the pinned charts rendered with the real helm, as in the
host tests: the figures of phases 3 to 6 are socle's own work (facts, checks, uploads,
manifests, waits), not k3s's, Argo CD's or the charts' start-up. The node's PostgreSQL
is the tests' stand-in. Phase times are the deploy's own progress lines
(operations/phases.py): each one's preparation (its file loaded, the facts it reads
first, its secrets decrypted) and its operations' run. Targets here: the no-op re-run
under 15 s, verify under 10 s.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.hosts import Harness, TestHost, changed_operations  # noqa: E402
from tests.hosts.admin import connect_admin, new_admin_key  # noqa: E402
from tests.hosts.k3s_node import standin_k3s_data  # noqa: E402
from tests.hosts.platform_node import (  # noqa: E402
    GRAFANA_KEY,
    POSTGRESQL_KEY,
    place_renderings,
    platform_node_data,
    renderings,
)
from tests.sops_files import write_sops_file  # noqa: E402

TARGET_NOOP_S = 15.0
TARGET_VERIFY_S = 10.0
PYINFRA = Path(sys.executable).with_name("pyinfra")
SOCLE = Path(sys.executable).with_name("socle")
PHASE_LINE = re.compile(r"^==> phase \d+/\d+ (\S+): (prepared|done) in ([\d.]+) s$")


def environment(hosts_file: Path, key_file: Path) -> dict[str, str]:
    """The operator's environment for the test inventory and the SOPS key."""
    return {**os.environ, "SOCLE_TEST_HOSTS": str(hosts_file),
            "SOPS_AGE_KEY_FILE": str(key_file), "SOPS_DISABLE_VERSION_CHECK": "1"}  # fmt: skip


def timed_deploy(
    env: dict[str, str], deploy: str
) -> tuple[float, dict[str, dict[str, float]], list[str]]:
    """One deploy with --json: its wall time, each phase's times (``prepared``: its file
    loaded, with the facts it reads first and its secrets decrypted; ``done``: its
    operations run), the operations that changed."""
    start = time.perf_counter()
    proc = subprocess.run([str(PYINFRA), "inventories/test.py", deploy, "-y", "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{deploy} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    phases: dict[str, dict[str, float]] = {}
    for line in proc.stderr.splitlines():
        if match := PHASE_LINE.match(line):
            phases.setdefault(match.group(1), {})[match.group(2)] = float(match.group(3))
    return elapsed, phases, changed_operations(proc.stdout)


def timed_verify(env: dict[str, str], reports: Path) -> tuple[float, str]:
    """`socle verify` once: its wall time and the overall verdict line."""
    start = time.perf_counter()
    proc = subprocess.run([str(SOCLE), "verify", "-i", "inventories/test.py", "--report-dir",
                           str(reports)], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    elapsed = time.perf_counter() - start
    verdict = next((line for line in proc.stdout.splitlines() if line.startswith("**")), "?")
    if proc.returncode != 0:
        raise SystemExit(f"socle verify is not Go on the healthy host:\n{proc.stdout}\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed, verdict


def one_round(harness: Harness, index: int, work: Path, verify_runs: int) -> dict[str, float]:
    """A fresh node: the cold deploy, the no-op re-run, then verify."""
    node: TestHost = harness.start(f"bench-phases-{index}")
    admin = harness.start(f"bench-admin-{index}")
    values = {key: secrets.token_urlsafe(18)
              for key in ("postgres_password", GRAFANA_KEY, POSTGRESQL_KEY)}  # fmt: skip
    folder = work / f"round-{index}"
    folder.mkdir()
    sops_file, key_file = write_sops_file(folder, values)
    admin_key, admin_public = new_admin_key(folder)
    data = platform_node_data(admin_public, values["postgres_password"], sops_file,
                              standin_k3s_data(folder))
    hosts_file = harness.write_hosts_file(folder / "hosts.json", [node], data={node.name: data})
    env = environment(hosts_file, key_file)
    timed_deploy(env, "tests/hosts/deploys/postgres_standin.py")
    place_renderings(node, renderings(data))

    cold, cold_phases, _ = timed_deploy(env, "deploys/all.py")
    noop, noop_phases, changed = timed_deploy(env, "deploys/all.py")
    if changed:
        raise SystemExit(f"the re-run of deploys/all.py changed {changed}")
    print(f"round {index + 1}: a fresh test host (prepare: the phase's file loaded, its "
          "first facts and secrets; run: its operations)")
    print(f"  {'phase':12s} {'cold prepare':>13s} {'cold run':>9s} {'no-op prepare':>14s} "
          f"{'no-op run':>10s}")
    times: dict[str, float] = {"cold": cold, "noop": noop}
    for phase, cold_times in cold_phases.items():
        noop_times = noop_phases.get(phase, {})
        row = {"cold prepare": cold_times.get("prepared", 0.0),
               "cold run": cold_times.get("done", 0.0),
               "no-op prepare": noop_times.get("prepared", 0.0),
               "no-op run": noop_times.get("done", 0.0)}  # fmt: skip
        times.update({f"{key} {phase}": value for key, value in row.items()})
        print(f"  {phase:12s} {row['cold prepare']:12.2f}s {row['cold run']:8.2f}s "
              f"{row['no-op prepare']:13.2f}s {row['no-op run']:9.2f}s")
    print(f"  {'deploy':12s} {cold:22.2f}s {noop:24.2f}s   (wall time of deploys/all.py, "
          f"pyinfra's start and connection included)", flush=True)

    connect_admin(hosts_file, admin, admin_key)
    node.ssh("sudo socle-agent backup postgres && sudo socle-agent drill postgres")
    verify_times = []
    for _ in range(verify_runs):
        took, verdict = timed_verify(env, folder / "reports")
        verify_times.append(took)
    print(f"  socle verify: {', '.join(f'{t:.2f}' for t in verify_times)} s ({verdict})",
          flush=True)
    harness.remove(admin)
    harness.remove(node)
    times["verify"] = statistics.median(verify_times)
    return times


def main() -> int:
    """Measure on fresh hosts and print each phase's times, the medians and the targets."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--verify-runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="socle-bench-phases-"))
    results: list[dict[str, float]] = []
    with Harness() as harness:
        for index in range(args.rounds):
            results.append(one_round(harness, index, work, args.verify_runs))
    if args.rounds > 1:
        print(f"\nmedians over {args.rounds} rounds:")
        for key in results[0]:
            print(f"  {key:26s} {statistics.median(r[key] for r in results):6.2f} s")
    noop = statistics.median(r["noop"] for r in results)
    cold = statistics.median(r["cold"] for r in results)
    verify = statistics.median(r["verify"] for r in results)
    print(f"\nwhole deploy: cold {cold:.2f} s; no-op re-run {noop:.2f} s "
          f"({noop / cold:.0%} of cold), target under {TARGET_NOOP_S:.0f} s "
          f"{'met' if noop < TARGET_NOOP_S else 'NOT met'}")
    print(f"socle verify on the healthy host: {verify:.2f} s, target under "
          f"{TARGET_VERIFY_S:.0f} s {'met' if verify < TARGET_VERIFY_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
