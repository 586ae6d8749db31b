"""Install socle's node agent from this repository's source, in its own virtualenv.

The agent and its dependencies travel as one tar of wheels (the bundle), built on the
operator's machine in a private folder of the operator's cache (0700, owned by the
operator, never a shared /tmp path), with the dependencies downloaded against the hashes
of `agent/requirements.lock`. The bundle holds the source digest it was built from and
the sha256 of every wheel; it is checked against the digest this deploy computed before
it is uploaded, and again on the node before pip installs it, with hashes required.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
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

LOCK_FILE = Path(__file__).resolve().parents[1] / "agent" / "requirements.lock"
DIGEST_MEMBER = "SOURCE_DIGEST"
SUMS_MEMBER = "SHA256SUMS"
REQUIREMENTS_MEMBER = "requirements.txt"
AGENT_REQUIREMENT_MEMBER = "agent-requirement.txt"
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-")


class BundleError(RuntimeError):
    """The bundle cannot be built, or is not what this deploy computed."""


def cache_dir() -> Path:
    """The operator's private folder for bundles: created 0700, refused if others could
    write to it or if it is not the operator's (a planted folder or link)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "socle" / "agent-bundles"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise BundleError(
            f"{folder} must be a folder of yours that only you can use (mode 0700); "
            "refusing to build the agent's bundle there"
        )
    return folder


def source_files(source_dir: Path) -> list[Path]:
    """Return the files the agent's bundle is made from, in a stable order."""
    # the lock too: new dependency pins are a new bundle for the node
    files = [source_dir / "pyproject.toml", source_dir / LOCK_FILE.name]
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
    return cache_dir() / f"{digest}-py{python}-{machine}.tar"


def manylinux_platforms(machine: str) -> list[str]:
    """Return the wheel platform tags a current glibc Linux on ``machine`` accepts."""
    tags = ["manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux_2_5", "manylinux1"]
    return [f"{tag}_{machine}" for tag in tags] + ["any"]


def build_bundle(source_dir: str, digest: str, python: str, machine: str) -> None:
    """Make one tar of the agent's wheel and every dependency's wheel for the node.

    Built on the operator's machine, so the node needs no access to a package index and
    installs exactly what was built here. Dependencies are downloaded with the hashes of
    `agent/requirements.lock`; the tar also holds the source digest, the sha256 of each
    wheel and pip requirement files with those hashes. Reused only if it checks out.
    """
    target = bundle_path(digest, python, machine)
    if target.exists():
        try:
            check_bundle(target, digest)
            return
        except BundleError:
            target.unlink()
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as work:
        # Built from a copy, so building leaves nothing behind in the repository.
        copy = Path(work) / "agent"
        shutil.copytree(
            source_dir, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
        )
        if source_digest(copy) != digest:
            raise BundleError("the agent's source changed while the deploy ran; run it again")
        wheels = Path(work) / "wheels"
        _pip("wheel", "--no-deps", "-w", str(wheels), str(copy))
        platforms = [arg for tag in manylinux_platforms(machine) for arg in ("--platform", tag)]
        _pip(
            "download", "--only-binary=:all:", "--no-deps", "--require-hashes",
            "-r", str(copy / LOCK_FILE.name), "--implementation", "cp", "--python-version", python,
            *platforms, "-d", str(wheels),
        )  # fmt: skip
        partial = Path(work) / "bundle.tar"
        with tarfile.open(partial, "w") as bundle:
            listing = _wheel_listing(wheels)
            for wheel in sorted(wheels.glob("*.whl")):
                bundle.add(wheel, arcname=wheel.name)
            for name, text in (
                (DIGEST_MEMBER, digest + "\n"),
                (SUMS_MEMBER, "".join(f"{h}  {w}\n" for w, (_, _, h) in listing.items())),
                (REQUIREMENTS_MEMBER, _requirements(listing, agent_only=False)),
                (AGENT_REQUIREMENT_MEMBER, _requirements(listing, agent_only=True)),
            ):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                bundle.addfile(info, io.BytesIO(data))
        partial.rename(target)
    check_bundle(target, digest)


def _wheel_listing(wheels: Path) -> dict[str, tuple[str, str, str]]:
    """wheel file name -> (project name, version, sha256)."""
    listing = {}
    for wheel in sorted(wheels.glob("*.whl")):
        found = _WHEEL_NAME.match(wheel.name)
        if found is None:
            raise BundleError(f"not a wheel name: {wheel.name}")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        listing[wheel.name] = (found["name"], found["version"], digest)
    return listing


def _requirements(listing: dict[str, tuple[str, str, str]], agent_only: bool) -> str:
    lines = []
    for name, version, digest in listing.values():
        if agent_only and name != "socle_agent":
            continue
        lines.append(f"{name}=={version} --hash=sha256:{digest}\n")
    return "".join(lines)


def check_bundle(bundle: Path, digest: str) -> None:
    """Refuse (BundleError) a bundle not built from source `digest`, or whose wheels do not
    match the sha256 it lists, or that holds anything but plain files."""
    try:
        with tarfile.open(bundle) as archive:
            members = archive.getmembers()
            files = {}
            for member in members:
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise BundleError(f"{bundle}: unexpected member {member.name!r}")
                handle = archive.extractfile(member)
                assert handle is not None
                files[member.name] = handle.read()
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"{bundle} cannot be read: {exc}") from exc
    if files.get(DIGEST_MEMBER, b"").decode().strip() != digest:
        raise BundleError(f"{bundle} was not built from this source (digest {digest[:12]})")
    sums = {}
    for line in files.get(SUMS_MEMBER, b"").decode().splitlines():
        checksum, _, name = line.partition("  ")
        sums[name] = checksum
    wheels = {name for name in files if name.endswith(".whl")}
    if set(sums) != wheels or not wheels:
        raise BundleError(f"{bundle}: its wheels and its {SUMS_MEMBER} differ")
    for name in wheels:
        if hashlib.sha256(files[name]).hexdigest() != sums[name]:
            raise BundleError(f"{bundle}: {name} does not match its sha256")


def _check_bundle_command(digest: str, python: str, machine: str) -> None:
    check_bundle(bundle_path(digest, python, machine), digest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
    # Commands run as they are yielded: from here the bundle is built. Checked again right
    # before the upload, and its sha256 is what the node checks the uploaded copy against
    # (a sudo upload passes through a temporary file on the node).
    yield FunctionCommand(_check_bundle_command, (digest, node["python"], node["machine"]), {})
    bundle_sha256 = _sha256(bundle) if bundle.exists() else "unbuilt"
    yield StringCommand(
        "install -d -m 0755", QuoteString(prefix),
        "&& { test -x", QuoteString(f"{prefix}/bin/pip"), "||", python, "-m venv",
        QuoteString(prefix), "; }",
    )  # fmt: skip
    yield FileUploadCommand(str(bundle), remote_bundle)
    pip = QuoteString(f"{prefix}/bin/pip")
    offline = "--quiet --disable-pip-version-check --no-index --require-hashes --find-links"
    wheels = QuoteString(remote_dir)
    # Checked on the node before anything is installed: built from this source, every
    # wheel as listed; pip then installs only wheels whose hashes it is given. The
    # version may be unchanged while the code changed: the agent itself is reinstalled,
    # after its dependencies are in.
    yield StringCommand(
        "echo", QuoteString(f"{bundle_sha256}  {remote_bundle}"), "| sha256sum --quiet -c -",
        "&& rm -rf", wheels, "&& mkdir -m 0700", wheels,
        "&& tar -xf", QuoteString(remote_bundle), "-C", wheels,
        "&& test \"$(cat", QuoteString(f"{remote_dir}/{DIGEST_MEMBER}"), ")\" =", digest,
        "&& ( cd", wheels, "&& sha256sum --quiet -c", SUMS_MEMBER, ")",
        "&&", pip, "install", offline, wheels,
        "-r", QuoteString(f"{remote_dir}/{REQUIREMENTS_MEMBER}"),
        "&&", pip, "install", offline, wheels, "--no-deps --force-reinstall",
        "-r", QuoteString(f"{remote_dir}/{AGENT_REQUIREMENT_MEMBER}"),
        "&& rm -rf", wheels, QuoteString(remote_bundle),
    )  # fmt: skip
    yield StringCommand(
        "echo", digest, ">", QuoteString(f"{prefix}/SOURCE_DIGEST"),
        "&& ln -sfn", QuoteString(f"{prefix}/bin/socle-agent"), QuoteString(link),
    )  # fmt: skip
