"""The versions file: read, checked, and unconfirmed pins refused at install time."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest

from socle.versions import (
    VERSIONS_FILE,
    UnconfirmedPin,
    VersionsError,
    k3s_minor,
    load_versions,
    parse_versions,
)

SHA = "a" * 64


@pytest.fixture
def pinned() -> dict[str, Any]:
    """The repository's versions file, parsed, with every checksum filled in."""
    data = tomllib.loads(VERSIONS_FILE.read_text())
    for arch in ("amd64", "arm64"):
        data["k3s"]["sha256"][arch] = {"binary": SHA, "airgap_images": SHA}
    data["postgresql"]["digest"] = "sha256:" + SHA
    return data


def test_the_repository_versions_file_loads() -> None:
    versions = load_versions()
    assert versions.k3s.minor == k3s_minor(versions.k3s.version)
    assert set(versions.charts) == {
        "argo-cd", "kube-prometheus-stack", "prometheus-postgres-exporter"
    }


def test_an_unconfirmed_checksum_is_refused_naming_the_command(pinned: dict[str, Any]) -> None:
    pinned["k3s"]["sha256"]["arm64"]["binary"] = "unconfirmed"
    versions = parse_versions(pinned)
    assert versions.k3s.artefacts("amd64").require_binary() == SHA
    with pytest.raises(UnconfirmedPin, match=r"k3s\.sha256\.arm64\.binary.*socle pins k3s"):
        versions.k3s.artefacts("arm64").require_binary()


def test_the_image_reference_carries_its_digest(pinned: dict[str, Any]) -> None:
    versions = parse_versions(pinned)
    assert versions.postgresql.require_reference().endswith("@sha256:" + SHA)
    pinned["postgresql"]["digest"] = "unconfirmed"
    with pytest.raises(UnconfirmedPin, match="socle pins postgresql"):
        parse_versions(pinned).postgresql.require_reference()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("k3s", "version"), "latest", "k3s.version"),
        (("k3s", "version"), "v1.33", "k3s.version"),
        (("k3s", "sha256", "amd64", "binary"), "abc", "k3s.sha256.amd64.binary"),
        (("charts", "argo-cd", "version"), "^10.1.0", "charts.argo-cd.version"),
        (("charts", "argo-cd", "version"), "10.x", "charts.argo-cd.version"),
        (("charts", "argo-cd", "repository"), "http://plain", "charts.argo-cd.repository"),
        (("postgresql", "tag"), "latest", "postgresql.tag"),
        (("postgresql", "tag"), "15.4", "postgresql.tag"),
        (("postgresql", "digest"), "sha256:short", "postgresql.digest"),
        (("postgresql", "major"), "16", "postgresql.major"),
    ],
)
def test_a_floating_or_malformed_pin_is_refused_naming_its_key(
    pinned: dict[str, Any], path: tuple[str, ...], value: Any, message: str
) -> None:
    broken = copy.deepcopy(pinned)
    table = broken
    for key in path[:-1]:
        table = table[key]
    table[path[-1]] = value
    with pytest.raises(VersionsError, match=message.replace(".", r"\.")):
        parse_versions(broken)


def test_a_missing_file_is_named(tmp_path: Any) -> None:
    with pytest.raises(VersionsError, match="cannot read the versions file"):
        load_versions(tmp_path / "absent.toml")


def test_an_image_is_pinned_by_digest_or_refused(pinned: dict[str, Any]) -> None:
    image = parse_versions(pinned).images["test-ingress"]
    refusal = r"images\.test-ingress\.digest.*socle pins test-ingress"
    with pytest.raises(UnconfirmedPin, match=refusal):
        image.require_reference()
    pinned["images"]["test-ingress"]["digest"] = "sha256:" + SHA
    reference = parse_versions(pinned).images["test-ingress"].require_reference()
    assert reference.endswith(":1.37.0@sha256:" + SHA)
    pinned["images"]["test-ingress"]["tag"] = "latest"
    with pytest.raises(VersionsError, match="latest"):
        parse_versions(pinned)


def test_a_host_may_name_another_versions_file(tmp_path: Any) -> None:
    from socle.versions import host_versions_file

    assert host_versions_file({}) is None
    assert str(host_versions_file({"socle_versions_file": "/tmp/v.toml"})) == "/tmp/v.toml"
    with pytest.raises(VersionsError, match="socle_versions_file"):
        host_versions_file({"socle_versions_file": 3})
