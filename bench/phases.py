"""Time phases 1, 2, 3 and 7 on a fresh test host: each phase's first run and no-op re-run,
then the whole deploy (deploys/all.py) re-run, which should change nothing.

    python bench/phases.py [--rounds 3]

k3s is the stand-in of tests/standins (air-gap folder and versions file made here), as
in the host tests: the figures of phase 3 are socle's own work (facts, checks, uploads,
unit, waits), not k3s's start-up. Every no-op run is checked to change nothing. Target
here: the whole deploy's no-op re-run under 15 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.hosts import Harness, TestHost, changed_operations  # noqa: E402
from tests.hosts.k3s_node import k3s_node_data, standin_k3s_data  # noqa: E402

PHASES = (
    ("1 baseline", "deploys/baseline.py"),
    ("2 wireguard", "deploys/wireguard.py"),
    ("3 k3s", "deploys/k3s.py"),
    ("7 agent", "deploys/agent.py"),
)
TARGET_NOOP_S = 15.0
PYINFRA = Path(sys.executable).with_name("pyinfra")
# A peer's public key whose private half nobody has: the VPN needs one peer.
PEER_PUBLIC_KEY = "PXaM7m/LQrBWZmw5kw0RLsTJNXif4ZbfMfdtNYNzOAw="


def timed_deploy(hosts_file: Path, deploy: str) -> tuple[float, list[str]]:
    """Run one deploy with --json; return its wall time and the operations that changed."""
    env = {**os.environ, "SOCLE_TEST_HOSTS": str(hosts_file), "SOPS_DISABLE_VERSION_CHECK": "1"}
    start = time.perf_counter()
    proc = subprocess.run([str(PYINFRA), "inventories/test.py", deploy, "-y", "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{deploy} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed, changed_operations(proc.stdout)


def one_round(harness: Harness, host: TestHost, hosts_file: Path) -> dict[str, float]:
    """First run and no-op re-run of each phase, then the whole deploy's re-run."""
    times: dict[str, float] = {}
    for label, deploy in PHASES:
        first, _ = timed_deploy(hosts_file, deploy)
        again, changed = timed_deploy(hosts_file, deploy)
        if changed:
            raise SystemExit(f"the re-run of {deploy} changed {changed}")
        times[f"{label} first"] = first
        times[f"{label} no-op"] = again
        print(f"  phase {label:12s} first run {first:6.2f} s   no-op re-run {again:6.2f} s",
              flush=True)
    whole, changed = timed_deploy(hosts_file, "deploys/all.py")
    if changed:
        raise SystemExit(f"the re-run of deploys/all.py changed {changed}")
    times["all no-op"] = whole
    print(f"  deploys/all.py no-op re-run {whole:6.2f} s (target under {TARGET_NOOP_S:.0f} s)",
          flush=True)
    return times


def main() -> int:
    """Measure on fresh hosts and print each phase's times and the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="socle-bench-phases-"))
    k3s = standin_k3s_data(work)
    data = k3s_node_data(PEER_PUBLIC_KEY, Path(k3s["socle_versions_file"]),
                         k3s_airgap_dir=k3s["k3s_airgap_dir"])
    results: list[dict[str, float]] = []
    with Harness() as harness:
        for round_ in range(args.rounds):
            host = harness.start(f"bench-phases-{round_}")
            hosts_file = harness.write_hosts_file(work / f"hosts-{round_}.json", [host],
                                                  data={host.name: data})
            print(f"round {round_ + 1}: a fresh test host", flush=True)
            results.append(one_round(harness, host, hosts_file))
            harness.remove(host)
    if args.rounds > 1:
        print(f"\nmedians over {args.rounds} rounds:")
        for key in results[0]:
            print(f"  {key:20s} {statistics.median(r[key] for r in results):6.2f} s")
    whole = statistics.median(r["all no-op"] for r in results)
    verdict = "met" if whole < TARGET_NOOP_S else "NOT met"
    print(f"\nwhole deploy no-op re-run: {whole:.2f} s, target {TARGET_NOOP_S:.0f} s {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
