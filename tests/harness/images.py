"""Build the test-host image: a base (pulled, or made with debootstrap) plus Dockerfile.test.

Example::

    base = ensure_base_image(client, cache_dir)
    image = ensure_test_image(client, base, public_key, repo_root)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from tests.harness.errors import ImageBuildFailed

DEFAULT_BASE = "docker.io/library/ubuntu:24.04"
LOCAL_BASE_REPOSITORY = "localhost/socle-test-base"
TEST_IMAGE_REPOSITORY = "localhost/socle-test-host"

# What a VPS image has, plus the slow packages the deploys install, so a test does not
# spend minutes in apt; the deploys still ensure their own packages.
BASE_PACKAGES: tuple[str, ...] = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "openssh-client", "python3",
    "iproute2", "sudo", "ca-certificates", "procps", "iptables", "ufw", "wireguard-tools",
    "wireguard-go", "netcat-openbsd", "curl", "unattended-upgrades", "systemd-timesyncd",
    "kmod", "less",
    # the off-site copies: restic on the node, rclone's append-only server on the store
    "restic", "rclone",
)


def log(message: str) -> None:
    """Print a progress line for long harness work."""
    print(f"[test-hosts] {message}", file=sys.stderr, flush=True)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` so parallel test runs build an image once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    """Return True when the engine holds the image `ref`."""
    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> tuple[str, str]:
    """Return (mirror URL, suite) of the machine's own Debian/Ubuntu apt sources.

    Reads deb822 `*.sources` files and one-line `sources.list` entries, so the base image
    is made from the mirror this machine already uses.

    >>> apt_mirror()  # doctest: +SKIP
    ('http://mirror.example/debian', 'bookworm')
    """
    candidates: list[tuple[str, str]] = []
    for path in sorted(sources_dir.glob("sources.list.d/*.sources")):
        text = path.read_text(errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(
                (line.split(":", 1)[0].strip(), line.split(":", 1)[1].strip())
                for line in stanza.splitlines()
                if ":" in line and not line.lstrip().startswith("#")
            )
            if "deb" in fields.get("Types", "").split() and fields.get("URIs"):
                for suite in fields.get("Suites", "").split():
                    candidates.append((fields["URIs"].split()[0], suite))
    lists = [sources_dir / "sources.list", *sorted(sources_dir.glob("sources.list.d/*.list"))]
    for path in lists:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if match:
                candidates.append((match.group(1), match.group(2)))
    for url, suite in candidates:
        # The main suite of the release, not -updates / -security.
        if "-" not in suite and "security" not in url:
            return url, suite
    raise ImageBuildFailed(
        "cannot make a base image: no Debian/Ubuntu apt source found in /etc/apt to "
        "debootstrap from; set SOCLE_TEST_BASE to an image your engine can pull"
    )


def _import_rootfs(client: docker.DockerClient, rootfs: Path, ref: str) -> None:
    repository, tag = ref.rsplit(":", 1)
    with tempfile.NamedTemporaryFile(suffix=".tar") as archive:
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", archive.name, "."],
            check=True,
        )
        try:
            with open(archive.name, "rb") as data:
                reply = client.api.import_image_from_data(data, repository=repository, tag=tag)
            # Podman's compatible API ignores the tag on import: tag by the id it returns.
            image_id = ""
            for line in str(reply).splitlines():
                if line.strip().startswith("{"):
                    message = json.loads(line)
                    image_id = message.get("id") or message.get("status") or image_id
            if not image_exists(client, ref) and image_id.startswith("sha256:"):
                client.images.get(image_id).tag(repository, tag)
        except (APIError, DockerException, ValueError) as exc:
            raise ImageBuildFailed(f"the engine refused to import the base image: {exc}") from exc
    if not image_exists(client, ref):
        raise ImageBuildFailed(f"importing the base image did not produce {ref}")


def build_local_base(client: docker.DockerClient, cache_dir: Path) -> str:
    """Make a base image with debootstrap from the machine's apt mirror; cached by content."""
    mirror, suite = apt_mirror()
    digest = hashlib.sha256(f"{mirror} {suite} {BASE_PACKAGES}".encode()).hexdigest()[:12]
    ref = f"{LOCAL_BASE_REPOSITORY}:{suite}-{digest}"
    with file_lock(cache_dir / "base-image.lock"):
        if image_exists(client, ref):
            return ref
        if shutil.which("debootstrap") is None:
            raise ImageBuildFailed(
                "the default base image cannot be pulled and debootstrap is missing to make "
                "one: run `sudo scripts/setup-machine.sh` (or apt-get install debootstrap)"
            )
        if os.geteuid() != 0:
            raise ImageBuildFailed(
                "the default base image cannot be pulled and making one with debootstrap "
                "needs root: run the tests as root or set SOCLE_TEST_BASE to a local image"
            )
        log(f"making base image {ref} with debootstrap from {mirror} {suite} (about 90 s)")
        with tempfile.TemporaryDirectory(prefix="socle-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            proc = subprocess.run(
                [
                    "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                    suite, str(rootfs), mirror,
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
                raise ImageBuildFailed(
                    f"debootstrap of {suite} from {mirror} failed (exit {proc.returncode}):\n"
                    f"{tail}"
                )
            # Apt lists and caches would only bloat the image.
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for item in (rootfs / leftover).glob("*"):
                    if item.is_file():
                        item.unlink()
            _import_rootfs(client, rootfs, ref)
        log(f"base image {ref} ready")
        return ref


def ensure_base_image(client: docker.DockerClient, cache_dir: Path) -> str:
    """Return the base image for test hosts: SOCLE_TEST_BASE, Ubuntu 24.04, or a local one."""
    wanted = os.environ.get("SOCLE_TEST_BASE")
    if wanted:
        if image_exists(client, wanted):
            return wanted
        try:
            client.images.pull(wanted)
        except (APIError, DockerException) as exc:
            raise ImageBuildFailed(f"SOCLE_TEST_BASE={wanted} cannot be pulled: {exc}") from exc
        return wanted
    if image_exists(client, DEFAULT_BASE):
        return DEFAULT_BASE
    try:
        client.images.pull(DEFAULT_BASE)
        return DEFAULT_BASE
    except (APIError, DockerException):
        log(f"{DEFAULT_BASE} cannot be pulled here; using a locally made base image")
    return build_local_base(client, cache_dir)


def ensure_test_image(
    client: docker.DockerClient, base: str, public_key: str, repo_root: Path, cache_dir: Path
) -> str:
    """Build Dockerfile.test on `base` with the harness' key; cached by content."""
    dockerfile = repo_root / "Dockerfile.test"
    content = dockerfile.read_bytes() + base.encode() + public_key.encode()
    ref = f"{TEST_IMAGE_REPOSITORY}:{hashlib.sha256(content).hexdigest()[:12]}"
    with file_lock(cache_dir / "test-image.lock"):
        if image_exists(client, ref):
            return ref
        log(f"building test-host image {ref} from Dockerfile.test on {base}")
        with tempfile.TemporaryDirectory(prefix="socle-build-") as context:
            shutil.copy(dockerfile, Path(context) / "Dockerfile")
            try:
                client.images.build(
                    path=context,
                    tag=ref,
                    buildargs={"BASE": base, "AUTHORIZED_KEY": public_key},
                    rm=True,
                    forcerm=True,
                )
            except BuildError as exc:
                tail = "\n".join(
                    str(chunk.get("stream", chunk.get("error", ""))).rstrip()
                    for chunk in list(exc.build_log)[-15:]
                )
                raise ImageBuildFailed(f"Dockerfile.test failed to build: {exc}\n{tail}") from exc
            except (APIError, DockerException) as exc:
                raise ImageBuildFailed(f"Dockerfile.test failed to build: {exc}") from exc
        log(f"test-host image {ref} ready")
        return ref
