"""Building the agent's bundle for a node: source digest, platforms, real wheels."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from operations import agent_package

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def agent_source(tmp_path: Path) -> Path:
    copy = tmp_path / "agent"
    shutil.copytree(REPO_ROOT / "agent", copy,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    return copy


def test_source_digest_is_stable_and_follows_the_code(agent_source: Path) -> None:
    first = agent_package.source_digest(agent_source)
    assert agent_package.source_digest(agent_source) == first

    (agent_source / "socle_agent" / "cli.py").write_text("# changed\n", encoding="utf-8")

    assert agent_package.source_digest(agent_source) != first


def test_source_digest_ignores_build_leftovers(agent_source: Path) -> None:
    first = agent_package.source_digest(agent_source)
    (agent_source / "socle_agent" / "__pycache__").mkdir(exist_ok=True)
    (agent_source / "socle_agent" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"x")

    assert agent_package.source_digest(agent_source) == first


def test_manylinux_platforms_are_for_the_node_machine() -> None:
    tags = agent_package.manylinux_platforms("aarch64")

    assert "manylinux2014_aarch64" in tags and "any" in tags
    assert not any("x86_64" in tag for tag in tags)


def test_build_bundle_holds_the_agent_and_its_dependencies_for_the_node(
    agent_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_package, "_BUILD_DIR", tmp_path / "build")
    digest = agent_package.source_digest(agent_source)

    agent_package.build_bundle(str(agent_source), digest, "3.12", "x86_64")

    bundle = agent_package.bundle_path(digest, "3.12", "x86_64")
    with tarfile.open(bundle) as archive:
        names = archive.getnames()
    assert any(name.startswith("socle_agent-") for name in names)
    assert any(name.startswith("psycopg_binary-") and "cp312" in name for name in names)
    assert any(name.startswith("prometheus_client-") for name in names)
    assert not (agent_source / "build").exists()
