"""Building the agent's bundle for a node: source digest, platforms, real wheels."""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tomllib
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


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "socle" / "agent-bundles"


def test_build_bundle_holds_the_agent_and_its_hashed_dependencies_for_the_node(
    agent_source: Path, private_cache: Path
) -> None:
    digest = agent_package.source_digest(agent_source)

    agent_package.build_bundle(str(agent_source), digest, "3.12", "x86_64")

    bundle = agent_package.bundle_path(digest, "3.12", "x86_64")
    assert bundle.parent == private_cache
    assert private_cache.stat().st_mode & 0o777 == 0o700
    with tarfile.open(bundle) as archive:
        names = archive.getnames()
        requirements = archive.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
        recorded = archive.extractfile("SOURCE_DIGEST").read().decode()  # type: ignore[union-attr]
    assert any(name.startswith("socle_agent-") for name in names)
    assert any(name.startswith("psycopg_binary-") and "cp312" in name for name in names)
    assert any(name.startswith("prometheus_client-") for name in names)
    assert recorded.strip() == digest
    assert all("--hash=sha256:" in line for line in requirements.splitlines())
    assert not (agent_source / "build").exists()
    agent_package.check_bundle(bundle, digest)

    with pytest.raises(agent_package.BundleError, match="not built from this source"):
        agent_package.check_bundle(bundle, "0" * 64)
    tampered = bundle.with_name("tampered.tar")
    with tarfile.open(bundle) as original, tarfile.open(tampered, "w") as copy:
        for member in original.getmembers():
            data = original.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.startswith("schedule-"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    with pytest.raises(agent_package.BundleError, match="does not match its sha256"):
        agent_package.check_bundle(tampered, digest)


def test_bundle_cache_refuses_a_folder_others_can_write(private_cache: Path) -> None:
    private_cache.mkdir(parents=True)
    private_cache.chmod(0o777)
    with pytest.raises(agent_package.BundleError, match="only you can use"):
        agent_package.cache_dir()


def test_lock_pins_every_direct_dependency_of_the_agent_with_hashes() -> None:
    project = tomllib.loads((REPO_ROOT / "agent" / "pyproject.toml").read_text())
    wanted = {re.split(r"[\[<>=]", d)[0].lower() for d in project["project"]["dependencies"]}
    lock = agent_package.LOCK_FILE.read_text()
    pinned = set(re.findall(r"^([a-z0-9-]+)==", lock, re.MULTILINE))
    assert wanted | {"psycopg-binary"} <= pinned
    lines = lock.splitlines()
    for index, line in enumerate(lines):
        if "==" in line:
            assert "--hash=sha256:" in lines[index + 1], line
