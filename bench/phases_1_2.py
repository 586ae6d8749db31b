"""Time phases 1 and 2 with socle and with the same tasks as an Ansible playbook.

    pip install -e '.[bench]'         # ansible-core, for the comparison only
    python bench/phases_1_2.py --rounds 3

Each round starts two fresh, identical test hosts (tests/harness), runs socle's
deploys/baseline.py and deploys/wireguard.py on one and bench/ansible/phases_1_2.yml on
the other (first run, then the no-op second run), alternating which tool goes first.
Both second runs are checked to change nothing. Prints each run and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.hosts import Harness, TestHost, changed_operations  # noqa: E402

BIN = Path(sys.executable).parent
PLAYBOOK = REPO / "bench" / "ansible" / "phases_1_2.yml"


def run_timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``argv`` from the repository; return its wall time and output, or fail."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        output = proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{output}")
    return elapsed, proc.stdout


def socle_runs(harness: Harness, host: TestHost, workdir: Path) -> tuple[float, float]:
    """Return the first and second run times of phases 1 and 2 with socle (pyinfra)."""
    hosts_file = harness.write_hosts_file(workdir / f"{host.name}.json", [host])
    env = {**os.environ, "SOCLE_TEST_HOSTS": str(hosts_file)}
    argv = [
        str(BIN / "pyinfra"), "inventories/test.py",
        "deploys/baseline.py", "deploys/wireguard.py", "-y", "--json",
    ]  # fmt: skip
    first, _ = run_timed(argv, env)
    second, output = run_timed(argv, env)
    if changed_operations(output):
        raise SystemExit(f"socle's second run changed: {changed_operations(output)}")
    return first, second


def ansible_runs(host: TestHost, workdir: Path) -> tuple[float, float]:
    """Return the first and second run times of the same tasks with ansible-playbook."""
    inventory = workdir / f"{host.name}.ini"
    inventory.write_text(
        f"{host.name} ansible_host={host.address} ansible_user={host.user} "
        f"ansible_ssh_private_key_file={host.key_path}\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOK.parent / "ansible.cfg")}
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK)]
    first, _ = run_timed(argv, env)
    second, output = run_timed(argv, env)
    if " changed=0 " not in output:
        raise SystemExit(f"Ansible's second run changed something:\n{output[-2000:]}")
    return first, second


def main() -> int:
    """Measure, alternating the tools, and print the times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not (BIN / "ansible-playbook").exists():
        raise SystemExit("ansible-core is not installed: pip install -e '.[bench]'")
    times: dict[str, list[float]] = {
        name: [] for name in ("socle", "socle-noop", "ansible", "ansible-noop")
    }
    workdir = REPO / ".testhosts" / "bench-phases"
    workdir.mkdir(parents=True, exist_ok=True)
    with Harness() as harness:
        for round_ in range(args.rounds):
            socle_host = harness.start(f"bench-socle-{round_}", networks=("public",))
            ansible_host = harness.start(f"bench-ansible-{round_}", networks=("public",))
            order = ["socle", "ansible"] if round_ % 2 == 0 else ["ansible", "socle"]
            for tool in order:
                if tool == "socle":
                    first, second = socle_runs(harness, socle_host, workdir)
                else:
                    first, second = ansible_runs(ansible_host, workdir)
                times[tool].append(first)
                times[f"{tool}-noop"].append(second)
                print(f"round {round_ + 1} {tool:8s} first {first:6.2f} s   no-op {second:6.2f} s")
            harness.remove(socle_host)
            harness.remove(ansible_host)

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nmedians over {args.rounds} rounds (phases 1 and 2, one fresh host each):")
    for label, key in (("first run", ""), ("no-op run", "-noop")):
        socle, ansible = median[f"socle{key}"], median[f"ansible{key}"]
        print(
            f"  {label}: socle {socle:6.2f} s   ansible {ansible:6.2f} s   "
            f"ansible/socle {ansible / socle:.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
