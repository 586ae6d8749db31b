"""The packages import each other in one direction only.

socle (pure logic over inventory data) is the bottom layer; facts read hosts; operations
change them; deploys and the command line (socle_cli) sit on top. The agent is a package
of its own that the operator side may read (to check settings) but never the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# What each layer may import from the project's own packages.
ALLOWED = {
    "socle": {"socle", "socle_agent"},
    "facts": {"socle", "facts"},
    "operations": {"socle", "facts", "operations"},
    "socle_cli": {"socle", "facts", "operations", "socle_cli", "socle_agent"},
    "agent/socle_agent": {"socle_agent"},
}
PROJECT_PACKAGES = {"socle", "socle_cli", "facts", "operations", "deploys", "socle_agent"}


def imported_packages(path: Path) -> set[str]:
    """Return the top-level project packages that the module at ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & PROJECT_PACKAGES


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_the_layers_below_it(layer: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) - ALLOWED[layer])
        for path in sorted((REPO / layer).rglob("*.py"))
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_no_module_edits_sys_path() -> None:
    edits = [
        str(path.relative_to(REPO))
        for layer in ALLOWED
        for path in (REPO / layer).rglob("*.py")
        if "sys.path" in path.read_text()
    ]
    assert edits == []
