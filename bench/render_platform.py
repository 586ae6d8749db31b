"""Rendering and validating every object of phases 4 to 6: the count and the time.

The same work as tests/gitops/test_platform_render.py: the root Application and each
child rendered with the real helm and the pinned charts, the deploys' manifests built,
every object validated offline (built-in kinds strictly at the pinned k3s version, custom
resources against the rendered CRDs and shared/schemas/crds), and socle's rules checked.
Target: under 60 s here.

    .venv/bin/python bench/render_platform.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from socle.gitops_values import root_values  # noqa: E402
from tests.gitops import checks  # noqa: E402
from tests.gitops.conftest import prod_data, render_versions  # noqa: E402
from tests.gitops.render import Renderer, crd_schemas_dir, missing_tools  # noqa: E402
from tests.gitops.test_platform_render import deploy_manifests  # noqa: E402


def one_round() -> tuple[int, float, float, float]:
    """Objects, then seconds to render, to validate, to check socle's rules."""
    start = time.perf_counter()
    values = root_values(prod_data(), render_versions())
    platform = Renderer().platform(values)
    objects = [obj for _, obj in platform.objects()] + deploy_manifests(values)
    rendered = time.perf_counter()
    book = checks.SchemaBook()
    book.add_crds(objects, "rendered")
    folder = crd_schemas_dir()
    if folder is not None:
        book.add_folder(folder)
    problems, _, _ = checks.validate_objects(
        objects, render_versions().k3s.kubernetes_version, book
    )
    validated = time.perf_counter()
    problems += (
        checks.missing_resources(objects)
        + checks.over_budget(objects)
        + checks.unpinned_images(objects)
        + checks.exposed(objects, "10.8.0.1")
        + checks.k3s_absent_scrapes_and_rules(objects)
    )
    checked = time.perf_counter()
    if problems:
        raise SystemExit("problems:\n" + "\n".join(problems))
    return len(objects), rendered - start, validated - rendered, checked - validated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print("cannot render: " + "; ".join(missing), file=sys.stderr)
        return 1
    totals = []
    for round_number in range(1, args.rounds + 1):
        count, render, validate, rules = one_round()
        total = render + validate + rules
        totals.append(total)
        print(
            f"round {round_number}: {count} objects; render {render:.2f} s, validate "
            f"{validate:.2f} s, socle's rules {rules:.2f} s; total {total:.2f} s "
            f"({validate / render:.2f}x the render for validation)"
        )
    median = statistics.median(totals)
    print(
        f"median {median:.2f} s for {count} objects ({count / median:.0f} objects/s); "
        f"target under 60 s: {'met' if median < 60 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
