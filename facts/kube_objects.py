"""Read one object from the node's k3s (`k3s kubectl get ... -o json`), if it is there."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pyinfra.api import FactBase
from typing_extensions import override

_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
_KIND = re.compile(r"^[a-z][a-z0-9.]{0,99}$")


class KubeObject(FactBase["dict[str, Any] | None"]):
    """
    Returns one object of the cluster as a dict, or ``None`` when it (or k3s) is absent.

    + kind: the resource, e.g. ``applications.argoproj.io`` or ``secret``
    + object_name: the object's name (``name`` is pyinfra's own argument)
    + namespace: its namespace

    .. code:: python

        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", ...}
    """

    @override
    @staticmethod
    def default() -> dict[str, Any] | None:
        return None

    @override
    def command(self, kind: str, object_name: str, namespace: str) -> str:
        name = object_name
        if not _KIND.match(kind) or not _NAME.match(name) or not _NAME.match(namespace):
            raise ValueError(f"not a resource, name and namespace: {kind!r} {name!r} {namespace!r}")
        args = " ".join(shlex.quote(a) for a in (kind, name, "-n", namespace, "-o", "json"))
        # Nothing at all when k3s is not installed yet or the object does not exist.
        return f"command -v k3s >/dev/null && k3s kubectl get {args} 2>/dev/null || true"

    @override
    def process(self, output: list[str]) -> dict[str, Any] | None:
        text = "\n".join(output).strip()
        if not text:
            return None
        value = json.loads(text)
        return value if isinstance(value, dict) else None
