"""Time test hosts: cold start (image not built), warm start, reboot, and a small deploy.

    python bench/test_hosts.py            # cold = Dockerfile.test built anew on the cached base
    python bench/test_hosts.py --cold-base  # also make the base image anew with debootstrap

Cold builds use a fresh key (and, with --cold-base, a changed package list), so they never
disturb the cached images other runs use; what they build is removed afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import images  # noqa: E402
from tests.harness.hosts import Harness  # noqa: E402

T = TypeVar("T")


def timed(label: str, results: dict[str, list[float]], action: Callable[[], T]) -> T:
    """Run `action()`, record its wall time under `label`, and return its result."""
    start = time.perf_counter()
    value = action()
    results.setdefault(label, []).append(time.perf_counter() - start)
    return value


def main() -> int:
    """Measure and print cold and warm start-up, reboot and deploy times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold-base", action="store_true", help="also rebuild the base image")
    parser.add_argument("--warm-runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}

    cached_packages = images.BASE_PACKAGES
    with tempfile.TemporaryDirectory(prefix="socle-bench-") as cache:
        cold_cache = Path(cache)
        if args.cold_base:
            images.BASE_PACKAGES = (*cached_packages, "file")
        try:
            with Harness(cache_dir=cold_cache) as cold:
                timed("cold start to SSH-ready", results, lambda: cold.start("cold"))
                built = [cold.image]
                if args.cold_base:
                    built.append(images.ensure_base_image(cold.client, cold_cache))
                cold.close()
                for ref in built:
                    cold.client.images.remove(ref)
        finally:
            images.BASE_PACKAGES = cached_packages

    with Harness() as warm:
        warm.start("prime")  # make sure the cached image exists before timing warm starts
        warm.close()
        for i in range(args.warm_runs):
            host = timed("warm start to SSH-ready", results, partial(warm.start, f"w{i}"))
            timed("reboot to SSH-ready", results, host.restart)
            with tempfile.TemporaryDirectory() as tmp:
                hosts_file = warm.write_hosts_file(Path(tmp) / "hosts.json", [host])
                deploy = partial(warm.run_pyinfra, hosts_file, "tests/hosts/deploys/smoke.py")
                timed("smoke deploy, first run", results, deploy)
                timed("smoke deploy, no-op re-run", results, deploy)
            warm.remove(host)

    print(f"\n{'measure':<32} {'median s':>9} {'min s':>7} {'max s':>7}  runs")
    for label, values in results.items():
        print(f"{label:<32} {statistics.median(values):>9.2f} {min(values):>7.2f} "
              f"{max(values):>7.2f}  {len(values)}")
    cold_s = results["cold start to SSH-ready"][0]
    warm_s = statistics.median(results["warm start to SSH-ready"])
    print(f"\ncold / warm start ratio: {cold_s / warm_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
