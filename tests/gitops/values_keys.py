"""Check a values file against the keys its chart knows: helm ignores unknown keys silently.

A chart knows a key when its values.yaml (or a subchart's, under the subchart's name) has
it, or when one of its templates reads it (`.Values.a.b`). Below a key whose default is
empty (`{}`, null) or that a template reads whole (`toYaml .Values.a.b`), anything goes:
that subtree is handed to the program as it is (resources, Alertmanager's config, ...).

Example::

    unknown_keys(values, ChartKeys.from_archive(Path("kube-prometheus-stack-88.5.3.tgz")))
    # ['prometheus.prometheusSpec.retentionSzie']
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_REFERENCE = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_-]*)+)")
_INDEX = re.compile(r"index\s+\.Values((?:\.[A-Za-z_][A-Za-z0-9_-]*)+)\s+\"([^\"]+)\"")
_WHOLE = re.compile(
    r"(?:toYaml|tpl|toJson|include|merge|mergeOverwrite|with|range|default)\b[^}]*?"
    r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_-]*)+)\s*(?:[|)}]|$)"
)


@dataclass
class ChartKeys:
    """The key paths one chart (with its subcharts) knows, and those free below."""

    known: set[tuple[str, ...]] = field(default_factory=set)
    free: set[tuple[str, ...]] = field(default_factory=set)

    @classmethod
    def from_archive(cls, archive: Path) -> ChartKeys:
        """Read a packaged chart: every values.yaml and template, subcharts included."""
        keys = cls()
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                parts = member.name.split("/")
                prefix = _subchart_prefix(parts)
                if prefix is None:
                    continue
                data = tar.extractfile(member)
                assert data is not None
                text = io.TextIOWrapper(data, encoding="utf-8", errors="replace").read()
                local = parts[1 + 2 * len(prefix) :]
                if local == ["values.yaml"]:
                    keys._add_values(prefix, yaml.safe_load(text) or {})
                elif local[:1] == ["templates"]:
                    keys._add_template(prefix, text)
        return keys

    @classmethod
    def from_folder(cls, folder: Path) -> ChartKeys:
        """Read a chart in a folder (no subcharts)."""
        keys = cls()
        keys._add_values((), yaml.safe_load((folder / "values.yaml").read_text()) or {})
        for template in (folder / "templates").rglob("*"):
            if template.is_file():
                keys._add_template((), template.read_text())
        return keys

    def _add_values(self, prefix: tuple[str, ...], values: Any, path: tuple[str, ...] = ()) -> None:
        here = prefix + path
        if path:
            self.known.add(here)
        if isinstance(values, Mapping):
            if not values:
                self.free.add(here)
            for key, value in values.items():
                self._add_values(prefix, value, path + (str(key),))
        elif values is None or values == "":
            self.free.add(here)

    def _add_template(self, prefix: tuple[str, ...], text: str) -> None:
        for match in _REFERENCE.finditer(text):
            path = prefix + tuple(match.group(1)[1:].split("."))
            for end in range(len(prefix) + 1, len(path) + 1):
                self.known.add(path[:end])
        for match in _INDEX.finditer(text):
            self.known.add(prefix + tuple(match.group(1)[1:].split(".")) + (match.group(2),))
        for match in _WHOLE.finditer(text):
            self.free.add(prefix + tuple(match.group(1)[1:].split(".")))

    def knows(self, path: tuple[str, ...]) -> bool:
        """Whether the chart reads ``path`` (or hands a subtree above it on as it is)."""
        if path in self.known:
            return True
        return any(path[:end] in self.free for end in range(1, len(path)))


def _subchart_prefix(parts: list[str]) -> tuple[str, ...] | None:
    """For `chart/charts/sub/charts/subsub/x`, the values prefix ('sub', 'subsub')."""
    prefix: list[str] = []
    rest = parts[1:]
    while len(rest) >= 3 and rest[0] == "charts":
        prefix.append(rest[1])
        rest = rest[2:]
    if rest and rest[0] == "charts":
        return None
    return tuple(prefix)


def leaf_paths(values: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path of a values tree (lists are values, not followed)."""
    if isinstance(values, Mapping) and values:
        for key, value in values.items():
            yield from leaf_paths(value, path + (str(key),))
    elif path:
        yield path


def unknown_keys(
    values: Mapping[str, Any], chart: ChartKeys, own: tuple[str, ...] = ()
) -> list[str]:
    """Key paths of ``values`` the chart does not know, dotted; ``own`` are top-level keys
    socle keeps for its own templates (e.g. ``socle`` for tpl'd settings)."""
    unknown = []
    for path in leaf_paths(values):
        if path[0] in own:
            continue
        if not chart.knows(path):
            unknown.append(".".join(path))
    return unknown
