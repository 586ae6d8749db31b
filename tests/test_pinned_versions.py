"""Nothing floats: no `latest`, no chart range, no `HEAD`, no image without its digest.

Checked in the versions file, the deploys and everything under gitops/. Each rule is also
shown to fail on a planted example, so the check cannot pass by reading nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from socle.versions import VERSIONS_FILE, VersionsError, load_versions

REPO = Path(__file__).resolve().parent.parent
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
FLOATING_WORD = re.compile(r"(?<![\w-])(latest|HEAD)(?![\w-])")
# An image reference written in a deploy: registry/name:tag, optionally @digest.
IMAGE_IN_CODE = re.compile(
    r"""["']((?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9._/-]+:[\w.-]+(?:@sha256:[0-9a-f]+)?)["']"""
)


def floating_in_python(text: str) -> Iterator[tuple[int, str]]:
    """Yield (line, problem) for floating versions in a deploy's source."""
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("#", 1)[0]
        if match := FLOATING_WORD.search(code):
            yield number, f"floating version {match.group(1)!r}"
        for image in IMAGE_IN_CODE.findall(code):
            if "/" in image and not DIGEST.search(image):
                yield number, f"image {image!r} without its digest"


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")
    else:
        yield path, node


def floating_in_manifest(document: Any) -> Iterator[str]:
    """Yield problems in one YAML document of gitops/ (a manifest or a values file)."""
    if not isinstance(document, dict):
        return
    for path, value in _walk(document):
        leaf = path.rsplit(".", 1)[-1]
        if not isinstance(value, str) or not value:
            continue  # an empty value is filled in from versions.toml at deploy time
        if value.strip() in ("latest", "HEAD"):
            yield f"{path}: floating version {value!r}"
        elif leaf == "image" and not DIGEST.search(value):
            yield f"{path}: image {value!r} without its digest"
        elif leaf == "tag" and not EXACT_VERSION.match(value):
            yield f"{path}: image tag {value!r} is not an exact version"
    kind = document.get("kind")
    spec = document.get("spec") or {}
    if kind == "HelmChart":
        version = str(spec.get("version", ""))
        if not EXACT_VERSION.match(version):
            yield f"spec.version: chart version {version!r} is not exact"
    if kind == "Application":
        sources = spec.get("sources") or [spec.get("source") or {}]
        for index, source in enumerate(sources):
            revision = str(source.get("targetRevision", ""))
            if "chart" in source and not EXACT_VERSION.match(revision):
                yield f"spec.sources[{index}].targetRevision: chart {revision!r} is not exact"
            elif "chart" not in source and revision in ("", "HEAD"):
                yield f"spec.sources[{index}].targetRevision: {revision or 'empty'} floats"
    if kind == "HelmChart" and isinstance(spec.get("valuesContent"), str):
        yield from floating_in_manifest(yaml.safe_load(spec["valuesContent"]))


def _yaml_loader() -> type[yaml.SafeLoader]:
    # Prometheus operator CRDs hold an enum value `=`, which PyYAML reads as a tag.
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: node.value)
    return Loader


def gitops_problems(root: Path) -> list[str]:
    """Every floating version in the YAML files under ``root``, as ``file: problem``.

    Helm templates are not YAML until rendered: tests/gitops renders them with the real
    charts and checks every image of the result; here their values files are read.
    """
    problems = []
    for file in sorted(root.rglob("*.y*ml")):
        if file.name.endswith(".test.yaml") or "templates" in file.relative_to(root).parts:
            continue
        for document in yaml.load_all(file.read_text(), Loader=_yaml_loader()):
            problems += [f"{file.relative_to(root)}: {p}" for p in floating_in_manifest(document)]
    return problems


def deploy_problems(root: Path) -> list[str]:
    """Every floating version in the deploys' Python sources."""
    return [
        f"{file.relative_to(root)}:{line}: {problem}"
        for file in sorted(root.rglob("*.py"))
        for line, problem in floating_in_python(file.read_text())
    ]


def test_the_versions_file_pins_exact_versions() -> None:
    load_versions(VERSIONS_FILE)


def test_gitops_pins_exact_versions() -> None:
    assert gitops_problems(REPO / "gitops") == []


def test_the_deploys_pin_exact_versions() -> None:
    assert deploy_problems(REPO / "deploys") == []


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ("kind: Deployment\nspec:\n  containers:\n  - image: postgres:16.10\n",
         "spec.containers[0].image: image 'postgres:16.10' without its digest"),
        ("kind: Pod\nspec:\n  image: {repository: nginx, tag: latest}\n",
         "spec.image.tag: floating version 'latest'"),
        ("kind: HelmChart\nspec:\n  chart: argo-cd\n  version: ^10.1.0\n",
         "spec.version: chart version '^10.1.0' is not exact"),
        ("kind: Application\nspec:\n  source:\n    chart: argo-cd\n    targetRevision: 10.*\n",
         "spec.sources[0].targetRevision: chart '10.*' is not exact"),
        ("kind: Application\nspec:\n  source:\n    path: gitops\n    targetRevision: HEAD\n",
         "spec.source.targetRevision: floating version 'HEAD'"),
        ("kind: HelmChart\nspec:\n  version: 1.2.3\n  valuesContent: |\n    image:\n"
         "      tag: 1.x\n", "image.tag: image tag '1.x' is not an exact version"),
    ],
)  # fmt: skip
def test_each_floating_form_in_gitops_is_caught(
    tmp_path: Path, manifest: str, problem: str
) -> None:
    (tmp_path / "app.yaml").write_text(manifest)

    assert f"app.yaml: {problem}" in gitops_problems(tmp_path)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ('image = "docker.io/library/postgres:16.10"\n',
         "image 'docker.io/library/postgres:16.10' without its digest"),
        ('chart_version = "latest"\n', "floating version 'latest'"),
        ('revision = "HEAD"\n', "floating version 'HEAD'"),
    ],
)  # fmt: skip
def test_each_floating_form_in_a_deploy_is_caught(
    tmp_path: Path, source: str, problem: str
) -> None:
    (tmp_path / "phase.py").write_text(source)

    assert deploy_problems(tmp_path) == [f"phase.py:1: {problem}"]


def test_a_floating_versions_file_is_refused(tmp_path: Path) -> None:
    floating = tmp_path / "versions.toml"
    floating.write_text(VERSIONS_FILE.read_text().replace('version = "10.1.1"', 'version = "10.x"'))

    with pytest.raises(VersionsError, match="charts.argo-cd.version"):
        load_versions(floating)
