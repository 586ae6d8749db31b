"""Install socle's node agent from this repository's source, in its own virtualenv."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Generator
from pathlib import Path

from pyinfra import host
from pyinfra.api import (
    FileUploadCommand,
    FunctionCommand,
    OperationValueError,
    QuoteString,
    StringCommand,
    operation,
)

from facts.agent_install import AgentInstall

_BUILD_DIR = Path(tempfile.gettempdir()) / "socle-agent-wheels"


def source_files(source_dir: Path) -> list[Path]:
    """Return the files a wheel of the agent is built from, in a stable order."""
    files = [source_dir / "pyproject.toml"]
    files += sorted((source_dir / "socle_agent").rglob("*.py"))
    return files


def source_digest(source_dir: Path) -> str:
    """Return the SHA-256 of the agent's source: names and contents of its files.

    >>> source_digest(Path("agent"))  # doctest: +SKIP
    '5c1f...'
    """
    digest = hashlib.sha256()
    for path in source_files(source_dir):
        digest.update(str(path.relative_to(source_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def bundle_path(digest: str, python: str, machine: str) -> Path:
    """Return where the agent's bundle for this source and node is made on this machine."""
    return _BUILD_DIR / f"{digest[:16]}-py{python}-{machine}" / "socle-agent-wheels.tar"


def manylinux_platforms(machine: str) -> list[str]:
    """Return the wheel platform tags a current glibc Linux on ``machine`` accepts."""
    tags = ["manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux_2_5", "manylinux1"]
    return [f"{tag}_{machine}" for tag in tags] + ["any"]


def build_bundle(source_dir: str, digest: str, python: str, machine: str) -> None:
    """Make one tar of the agent's wheel and every dependency's wheel for the node.

    Built on the operator's machine, so the node needs no access to a package index and
    installs exactly what was built here.
    """
    target = bundle_path(digest, python, machine)
    if target.exists():
        return
    with tempfile.TemporaryDirectory(prefix="socle-agent-build-") as work:
        # Built from a copy, so building leaves nothing behind in the repository.
        copy = Path(work) / "agent"
        shutil.copytree(
            source_dir, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
        )
        wheels = Path(work) / "wheels"
        _pip("wheel", "--no-deps", "-w", str(wheels), str(copy))
        agent_wheel = next(wheels.glob("socle_agent-*.whl"))
        platforms = [arg for tag in manylinux_platforms(machine) for arg in ("--platform", tag)]
        _pip(
            "download", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", python, *platforms, "-d", str(wheels), str(agent_wheel),
        )  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with tarfile.open(partial, "w") as bundle:
            for wheel in sorted(wheels.glob("*.whl")):
                bundle.add(wheel, arcname=wheel.name)
        partial.rename(target)


def _pip(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"pip {args[0]} for the agent failed:\n{proc.stderr[-2000:]}")


@operation()
def package(
    source_dir: str = "agent",
    prefix: str = "/opt/socle-agent",
    python: str = "python3",
    link: str = "/usr/local/bin/socle-agent",
) -> Generator[StringCommand | FileUploadCommand | FunctionCommand, None, None]:
    """
    Install the agent built from ``source_dir`` into the virtualenv ``prefix`` on the node.

    + source_dir: the agent's source folder (with its ``pyproject.toml``), on this machine
    + prefix: the virtualenv on the node that holds the agent and its dependencies
    + python: the node's Python 3.11+ used to make the virtualenv
    + link: where the ``socle-agent`` command is linked, for systemd and operators

    The agent's wheel and its dependencies' wheels (for the node's Python and CPU) are
    built on the operator's machine and uploaded as one file, so the node needs no
    package index. That happens only when the source changed since the last install (the
    node keeps the digest of what it runs): a re-run is a no-op.

    **Example:**

    .. code:: python

        agent_package.package(name="socle-agent from this repository")
    """
    source = Path(source_dir)
    if not (source / "pyproject.toml").exists():
        raise OperationValueError(f"{source_dir} holds no pyproject.toml: not the agent's source")
    digest = source_digest(source)
    node = host.get_fact(AgentInstall, prefix=prefix)
    if node["digest"] == digest:
        host.noop(f"{node['version']} is installed from this source")
        return

    if not node["python"] or tuple(map(int, node["python"].split("."))) < (3, 11):
        raise OperationValueError(
            f"the agent needs Python 3.11 or newer on the node, found {node['python'] or 'none'}"
        )
    bundle = bundle_path(digest, node["python"], node["machine"])
    remote_dir = f"{prefix}/wheels"
    remote_bundle = f"{prefix}/wheels.tar"
    yield FunctionCommand(build_bundle, (source_dir, digest, node["python"], node["machine"]), {})
    yield StringCommand(
        "install -d -m 0755", QuoteString(prefix),
        "&& { test -x", QuoteString(f"{prefix}/bin/pip"), "||", python, "-m venv",
        QuoteString(prefix), "; }",
    )  # fmt: skip
    yield FileUploadCommand(str(bundle), remote_bundle)
    pip = QuoteString(f"{prefix}/bin/pip")
    offline = "--quiet --disable-pip-version-check --no-index --find-links"
    # The version may be unchanged while the code changed: the agent itself is
    # reinstalled, after its dependencies are in.
    yield StringCommand(
        "rm -rf", QuoteString(remote_dir), "&& mkdir", QuoteString(remote_dir),
        "&& tar -xf", QuoteString(remote_bundle), "-C", QuoteString(remote_dir),
        "&&", pip, "install", offline, QuoteString(remote_dir), "socle-agent",
        "&&", pip, "install", offline, QuoteString(remote_dir),
        "--no-deps --force-reinstall socle-agent",
        "&& rm -rf", QuoteString(remote_dir), QuoteString(remote_bundle),
    )  # fmt: skip
    yield StringCommand(
        "echo", digest, ">", QuoteString(f"{prefix}/SOURCE_DIGEST"),
        "&& ln -sfn", QuoteString(f"{prefix}/bin/socle-agent"), QuoteString(link),
    )  # fmt: skip
