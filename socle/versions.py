"""The platform's pinned versions, read from ``versions.toml`` and checked.

Every version, checksum and digest of the platform (k3s, the Helm charts, the PostgreSQL
image) lives in that one file. A value that could not be confirmed from its publisher is
written ``"unconfirmed"``: loading accepts it, but asking for it to install something
raises ``UnconfirmedPin``, naming the command that fills it in.

Example::

    versions = load_versions()
    versions.k3s.version                      # 'v1.33.2+k3s1'
    versions.k3s.minor                        # (1, 33)
    versions.charts["argo-cd"].version        # '10.1.1'
    versions.k3s.artefacts("amd64").require_binary()   # raises UnconfirmedPin until pinned
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNCONFIRMED = "unconfirmed"
VERSIONS_FILE = Path(__file__).resolve().parent.parent / "versions.toml"
ARCHITECTURES = ("amd64", "arm64")

_K3S_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$")
_IMAGE = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(\.[a-z0-9-]+)*(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$"
)
_LOOPBACK_HTTP = ("http://127.0.0.1:", "http://localhost:")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class VersionsError(ValueError):
    """The versions file is missing, malformed or holds a floating version."""


class UnconfirmedPin(VersionsError):
    """An artefact's checksum or digest is not confirmed yet: refuse to install it."""


def _fill_command(what: str) -> str:
    return f"socle pins {what}"


@dataclass(frozen=True)
class K3sArtefacts:
    """The sha256 of one architecture's k3s binary and air-gap images archive."""

    arch: str
    binary: str
    airgap_images: str

    def require_binary(self) -> str:
        """Return the binary's sha256, or raise ``UnconfirmedPin`` when not confirmed."""
        return _require(self.binary, f"k3s.sha256.{self.arch}.binary", "k3s")

    def require_airgap_images(self) -> str:
        """Return the images archive's sha256, or raise ``UnconfirmedPin``."""
        return _require(self.airgap_images, f"k3s.sha256.{self.arch}.airgap_images", "k3s")


def k3s_binary_name(arch: str) -> str:
    """The name of k3s's binary in a release: ``k3s`` for amd64, ``k3s-arm64`` for arm64."""
    return "k3s" if arch == "amd64" else f"k3s-{arch}"


def k3s_airgap_images_name(arch: str) -> str:
    """The name of the air-gap images archive socle installs (zstd, the smallest)."""
    return f"k3s-airgap-images-{arch}.tar.zst"


def k3s_checksums_name(arch: str) -> str:
    """The name of the release's published checksum file for ``arch``."""
    return f"sha256sum-{arch}.txt"


@dataclass(frozen=True)
class K3sPin:
    """The pinned k3s release and its checksums per architecture."""

    version: str
    release_url: str
    sha256: Mapping[str, K3sArtefacts]

    @property
    def minor(self) -> tuple[int, int]:
        """``(major, minor)`` of the Kubernetes version, e.g. ``(1, 33)``."""
        return k3s_minor(self.version)

    @property
    def kubernetes_version(self) -> str:
        """The Kubernetes version without k3s's suffix, e.g. ``1.33.2``."""
        return self.version[1:].split("+", 1)[0]

    def release_file_url(self, name: str) -> str:
        """The address of one file of the pinned release (``+`` in the version escaped)."""
        return f"{self.release_url}/{self.version.replace('+', '%2B')}/{name}"

    def artefacts(self, arch: str) -> K3sArtefacts:
        """Return the checksums for ``arch`` (``amd64`` or ``arm64``)."""
        if arch not in self.sha256:
            raise VersionsError(f"k3s.sha256: no architecture {arch!r} (known: {ARCHITECTURES})")
        return self.sha256[arch]


@dataclass(frozen=True)
class ChartPin:
    """A Helm chart at an exact version, and the repository production fetches it from."""

    name: str
    version: str
    repository: str


@dataclass(frozen=True)
class PostgresqlPin:
    """The PostgreSQL server: its major version and the official image by digest."""

    major: int
    image: str
    tag: str
    digest: str

    def require_reference(self) -> str:
        """Return ``image:tag@digest``, or raise ``UnconfirmedPin`` without a digest."""
        digest = _require(self.digest, "postgresql.digest", "postgresql")
        return f"{self.image}:{self.tag}@{digest}"


@dataclass(frozen=True)
class ImagePin:
    """A container image at an exact tag, pinned by digest."""

    name: str
    image: str
    tag: str
    digest: str

    def require_reference(self) -> str:
        """Return ``image:tag@digest``, or raise ``UnconfirmedPin`` without a digest."""
        digest = _require(self.digest, f"images.{self.name}.digest", self.name)
        return f"{self.image}:{self.tag}@{digest}"


@dataclass(frozen=True)
class Versions:
    """Everything ``versions.toml`` pins."""

    k3s: K3sPin
    charts: Mapping[str, ChartPin]
    postgresql: PostgresqlPin
    source: str
    images: Mapping[str, ImagePin] = field(default_factory=dict)


def k3s_minor(version: str) -> tuple[int, int]:
    """Return ``(major, minor)`` of a k3s version such as ``v1.33.2+k3s1``."""
    match = _K3S_VERSION.match(version)
    if match is None:
        raise VersionsError(f"{version!r} is not a k3s release version (like v1.33.2+k3s1)")
    return int(match.group(1)), int(match.group(2))


def _require(value: str, key: str, what: str) -> str:
    if value == UNCONFIRMED:
        raise UnconfirmedPin(
            f"versions.toml: {key} is unconfirmed, so socle refuses to install it; "
            f"fill it in from the publisher with `{_fill_command(what)}`"
        )
    return value


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise VersionsError(f"versions.toml: [{key}] is missing or not a table")
    return value


def _string(data: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise VersionsError(f"versions.toml: {where}.{key} = {value!r} is not valid")
    return value


def _checksum(data: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]) -> str:
    value = data.get(key)
    if value == UNCONFIRMED:
        return UNCONFIRMED
    if not isinstance(value, str) or not pattern.match(value):
        raise VersionsError(
            f"versions.toml: {where}.{key} = {value!r} is neither a checksum nor "
            f'"{UNCONFIRMED}"'
        )
    return value


def _https(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    # Plain http only on the loopback address, where tests serve a stand-in release.
    loopback = isinstance(value, str) and value.startswith(_LOOPBACK_HTTP)
    if not isinstance(value, str) or not (value.startswith("https://") or loopback) or (
        " " in value
    ):
        raise VersionsError(f"versions.toml: {where}.{key} = {value!r} is not an https URL")
    return value.rstrip("/")


def parse_versions(data: Mapping[str, Any], source: str = "versions.toml") -> Versions:
    """Return the pins in ``data`` (the parsed TOML), or raise ``VersionsError``."""
    k3s = _table(data, "k3s")
    version = _string(k3s, "version", "k3s", _K3S_VERSION)
    sha256 = _table(k3s, "sha256")
    artefacts = {}
    for arch in ARCHITECTURES:
        entry = _table(sha256, arch)
        where = f"k3s.sha256.{arch}"
        artefacts[arch] = K3sArtefacts(
            arch=arch,
            binary=_checksum(entry, "binary", where, _SHA256),
            airgap_images=_checksum(entry, "airgap_images", where, _SHA256),
        )
    k3s_pin = K3sPin(
        version=version, release_url=_https(k3s, "release_url", "k3s"), sha256=artefacts
    )
    charts = {}
    for name, chart in _table(data, "charts").items():
        if not isinstance(chart, Mapping):
            raise VersionsError(f"versions.toml: [charts.{name}] is not a table")
        charts[name] = ChartPin(
            name=name,
            version=_string(chart, "version", f"charts.{name}", _EXACT_VERSION),
            repository=_https(chart, "repository", f"charts.{name}"),
        )
    postgresql = _table(data, "postgresql")
    major = postgresql.get("major")
    if isinstance(major, bool) or not isinstance(major, int) or not 12 <= major <= 40:
        raise VersionsError(f"versions.toml: postgresql.major = {major!r} is not a major version")
    tag = _string(postgresql, "tag", "postgresql", _TAG)
    if tag == "latest" or not tag.startswith(f"{major}."):
        raise VersionsError(
            f"versions.toml: postgresql.tag = {tag!r} must be an exact {major}.x version"
        )
    postgresql_pin = PostgresqlPin(
        major=major,
        image=_string(postgresql, "image", "postgresql", _IMAGE),
        tag=tag,
        digest=_checksum(postgresql, "digest", "postgresql", _DIGEST),
    )
    images = {}
    for name, entry in (data.get("images") or {}).items():
        where = f"images.{name}"
        if not isinstance(entry, Mapping):
            raise VersionsError(f"versions.toml: [{where}] is not a table")
        tag = _string(entry, "tag", where, _TAG)
        if tag == "latest":
            raise VersionsError(f"versions.toml: {where}.tag = 'latest' floats; pin a version")
        images[name] = ImagePin(
            name=name,
            image=_string(entry, "image", where, _IMAGE),
            tag=tag,
            digest=_checksum(entry, "digest", where, _DIGEST),
        )
    return Versions(k3s=k3s_pin, charts=charts, postgresql=postgresql_pin, source=source,
                    images=images)


# The inventory key naming another versions file than versions.toml for a host: a
# staging pin, or the one a test makes for its stand-ins. Production leaves it unset.
VERSIONS_FILE_KEY = "socle_versions_file"


def host_versions_file(data: Mapping[str, Any]) -> Path | None:
    """The versions file a host's inventory data names, or ``None`` for versions.toml."""
    value = data.get(VERSIONS_FILE_KEY)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise VersionsError(f"inventory key {VERSIONS_FILE_KEY!r}: {value!r} is not a path")
    return Path(value)


def load_versions(path: Path | str | None = None) -> Versions:
    """Read and check the versions file (``versions.toml`` at the repository root)."""
    file = Path(path) if path is not None else VERSIONS_FILE
    try:
        data = tomllib.loads(file.read_text())
    except OSError as error:
        raise VersionsError(f"cannot read the versions file {file}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise VersionsError(f"{file} is not valid TOML: {error}") from None
    return parse_versions(data, source=str(file))
