"""Build the stand-in k3s for a version, lay out its release, and pin it in a versions file.

Only for tests: the "binary" is a Python zip application (``#!/usr/bin/python3``) holding
``tests/standins/k3s.py``, the kine datastore and writer it reuses, and PyYAML (pure
Python) for reading manifests, with the version baked in. Built deterministically: the
same version gives the same bytes, so the same sha256.

Example::

    release = make_release("v1.33.2+k3s1", tmp_path)
    versions = write_versions_file(tmp_path / "versions.toml", release)
    # host data: {"socle_versions_file": str(versions), "k3s_airgap_dir": str(release.airgap_dir)}
"""

from __future__ import annotations

import gzip
import hashlib
import importlib._bootstrap_external
import io
import tarfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import tomli_w
import yaml

from socle.versions import VERSIONS_FILE

STANDINS = Path(__file__).resolve().parent
# The stand-in and the modules it imports, at their package paths inside the zip.
MODULES = (
    "__init__.py", "k3s.py", "k3s_controllers.py", "k3s_datastore.py", "kine_writer.py",
)
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
IMAGES_ARCHIVE = "k3s-airgap-images-{arch}.tar.gz"
BINARY_NAMES = {"amd64": "k3s", "arm64": "k3s-arm64"}


@dataclass(frozen=True)
class StandinRelease:
    """A stand-in k3s release: its air-gap folder and the sha256 of what it holds."""

    version: str
    airgap_dir: Path
    binary_sha256: str
    images_sha256: str

    @property
    def binary(self) -> Path:
        return self.airgap_dir / BINARY_NAMES["amd64"]


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)
    if name.endswith(".py") and name != "__main__.py":
        # Byte code beside the source, stamped with the entry's time: a Python of the same
        # version loads it instead of compiling on every call (a zip cannot cache it);
        # another version falls back to the source.
        code = compile(data, name, "exec", dont_inherit=True)
        stamp = int(time.mktime(FIXED_TIME + (0, 0, -1)))
        pyc = importlib._bootstrap_external._code_to_timestamp_pyc(  # type: ignore[attr-defined]
            code, stamp, len(data))
        _add(archive, name + "c", bytes(pyc))


def build_binary(version: str, target: Path) -> Path:
    """Write the stand-in k3s for ``version`` to ``target`` (mode 0755) and return it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add(archive, "__main__.py", (
            "import sys\n"
            "from tests.standins.k3s import main\n"
            f"sys.exit(main(version={version!r}))\n"
        ).encode())  # fmt: skip
        _add(archive, "tests/__init__.py", b"")
        for module in MODULES:
            _add(archive, f"tests/standins/{module}", (STANDINS / module).read_bytes())
        yaml_dir = Path(yaml.__file__).parent
        for source in sorted(yaml_dir.glob("*.py")):
            _add(archive, f"yaml/{source.name}", source.read_bytes())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"#!/usr/bin/python3\n" + buffer.getvalue())
    target.chmod(0o755)
    return target


def build_images_archive(version: str, target: Path) -> Path:
    """A small gzip'd tar standing for the air-gap images archive of ``version``."""
    marker = f"stand-in air-gap images for k3s {version}\n".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("manifest.txt")
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker))
    target.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return target


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_release(version: str, folder: Path) -> StandinRelease:
    """Lay out an air-gap folder for ``version`` under ``folder``: both binary names and
    both architectures' images archives (the stand-in runs anywhere Python does)."""
    airgap = folder / version.replace("+", "-")
    binary = build_binary(version, airgap / BINARY_NAMES["amd64"])
    (airgap / BINARY_NAMES["arm64"]).write_bytes(binary.read_bytes())
    (airgap / BINARY_NAMES["arm64"]).chmod(0o755)
    images = build_images_archive(version, airgap / IMAGES_ARCHIVE.format(arch="amd64"))
    (airgap / IMAGES_ARCHIVE.format(arch="arm64")).write_bytes(images.read_bytes())
    return StandinRelease(version, airgap, sha256_of(binary), sha256_of(images))


# What the test ingress's and PostgreSQL's images are pinned to in test versions files:
# the stand-in runs no container, so no registry is asked for them.
STANDIN_IMAGE_DIGEST = "sha256:" + "0" * 64
STANDIN_POSTGRESQL_DIGEST = "sha256:" + hashlib.sha256(b"socle: stand-in, no image").hexdigest()


def write_versions_file(
    path: Path,
    release: StandinRelease,
    base: Path = VERSIONS_FILE,
    release_url: str | None = None,
    binary_sha256: str | None = None,
) -> Path:
    """Write a copy of ``base`` whose k3s pin is the stand-in ``release`` (served from
    ``release_url`` when given), and whose test-ingress and PostgreSQL images have a digest.
    ``binary_sha256`` pins another checksum, for a pin the files do not match."""
    data = tomllib.loads(base.read_text())
    pins = {"binary": binary_sha256 or release.binary_sha256,
            "airgap_images": release.images_sha256}
    data["k3s"]["version"] = release.version
    data["k3s"]["sha256"] = {arch: dict(pins) for arch in BINARY_NAMES}
    if release_url is not None:
        data["k3s"]["release_url"] = release_url
    data["images"]["test-ingress"]["digest"] = STANDIN_IMAGE_DIGEST
    data["postgresql"]["digest"] = STANDIN_POSTGRESQL_DIGEST
    path.write_text(tomli_w.dumps(data))
    return path
