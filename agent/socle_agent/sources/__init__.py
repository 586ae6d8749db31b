"""The registry of backup sources: every module here that defines `SOURCE`, plus plug-ins.

Adding a kind of backup is adding one module to this package that sets
`SOURCE = SomeSource()` (see `socle_agent.source.Source`), or, from another package, an
entry point in the group `socle_agent.sources` naming such an object:

    [project.entry-points."socle_agent.sources"]
    etcd = "socle_etcd.source:SOURCE"

Example:

    for kind, source in registry().items():
        print(kind, sorted(source.actions()))   # postgres ['backup', 'drill'] ...
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points

from socle_agent.source import Source

ENTRY_POINT_GROUP = "socle_agent.sources"
log = logging.getLogger(__name__)


def registry() -> dict[str, Source]:
    """Every source by kind, built-in ones first, then plug-ins, each kind sorted.

    A plug-in may not take the kind of a built-in source or of another plug-in.
    """
    found: dict[str, Source] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        source = getattr(module, "SOURCE", None)
        if isinstance(source, Source):
            found[source.kind] = source
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        source = point.load()
        if not isinstance(source, Source):
            raise TypeError(f"entry point {point.name} = {point.value} is not a Source")
        if source.kind in found:
            raise ValueError(f"entry point {point.name}: kind {source.kind!r} is taken")
        found[source.kind] = source
    return found


def job_names() -> tuple[str, ...]:
    """Every source job's name, `<kind>_<action>`."""
    return tuple(f"{kind}_{action}" for kind, s in registry().items() for action in s.actions())
