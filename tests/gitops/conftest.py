"""The platform rendered once per session, with the production inventory's data.

Rendering needs the real `helm` (scripts/setup-machine.sh installs it in .tools/bin) and
the pinned chart archives (a `shared/charts` folder beside the repository or a parent,
or $SOCLE_CHARTS_DIR). Where they are missing the tests say which and how to get them:
skipped on a developer's machine, failed in CI (CI=true), where they must be.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import runpy
from pathlib import Path
from typing import Any

import pytest

from socle.gitops_values import root_values
from socle.versions import UNCONFIRMED, Versions, load_versions
from tests.gitops.render import Platform, Renderer, missing_tools

REPO = Path(__file__).resolve().parents[2]
PROD_DATA = REPO / "inventories" / "group_data" / "prod.py"
# Until versions.toml holds the PostgreSQL image's confirmed digest (the deploy refuses to
# install without it), renders use this one, which names no real image.
STAND_IN_DIGEST = "sha256:" + hashlib.sha256(b"socle: no image, for offline renders").hexdigest()


def require_render_tools() -> None:
    """Skip (fail in CI) when helm or the pinned charts are missing, saying which."""
    missing = missing_tools()
    if not missing:
        return
    message = "cannot render the pinned charts; missing: " + "; ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def render_versions() -> Versions:
    """versions.toml, with a stand-in digest where the PostgreSQL image's is unconfirmed."""
    versions = load_versions()
    if versions.postgresql.digest == UNCONFIRMED:
        versions = dataclasses.replace(
            versions, postgresql=dataclasses.replace(versions.postgresql, digest=STAND_IN_DIGEST)
        )
    return versions


def prod_data() -> dict[str, Any]:
    """The production inventory's group data."""
    return dict(runpy.run_path(str(PROD_DATA)))


@pytest.fixture(scope="session")
def renderer() -> Renderer:
    """A renderer with the real helm and the pinned charts."""
    require_render_tools()
    return Renderer()


@pytest.fixture(scope="session")
def prod_values() -> dict[str, Any]:
    """The root Application's values the production inventory gives."""
    return root_values(prod_data(), render_versions())


@pytest.fixture(scope="session")
def platform(renderer: Renderer, prod_values: dict[str, Any]) -> Platform:
    """Every object of phases 4 to 6 Argo CD would apply, rendered once."""
    return renderer.platform(prod_values)
