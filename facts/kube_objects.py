"""Read the node's k3s: one object (`k3s kubectl get ... -o json`), if it is there, and
Argo CD's Applications with their status."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pyinfra.api import FactBase
from typing_extensions import override

_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
# The start of the node-side programs that boil a `kubectl get ... -o json` listing down:
# `items`, or one `error` line; then a first line even for no item (a fact without output
# reads as no answer).
LISTING_PREAMBLE = r"""
import json, sys
raw = sys.stdin.read()
try:
    items = json.loads(raw)["items"]
except (ValueError, KeyError):
    print("error " + " ".join(raw.split())[-300:])
    sys.exit(0)
print("listed")  # a line even for none: a fact without output reads as no answer"""
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


# Boils `kubectl get applications -o json` down on the node: name, sync, health, and
# whether a stand-in played the status (a test's stand-in k3s says so in the status).
_APPLICATIONS_PROGRAM = LISTING_PREAMBLE + r"""
for app in items:
    status = app.get("status") or {}
    sync = (status.get("sync") or {}).get("status") or "Unknown"
    health = (status.get("health") or {}).get("status") or "Unknown"
    played = "stand-in" if status.get("standin") else "-"
    print("application", app["metadata"]["name"], sync, health, played)
"""


class ArgoApplications(FactBase["dict[str, Any]"]):
    """
    Returns Argo CD's Applications in ``namespace`` with their sync and health status, or
    why they could not be listed (k3s or Argo CD absent, the API not answering).

    + namespace: Argo CD's namespace

    .. code:: python

        {"error": None, "applications": [
            {"name": "socle-root", "sync": "Synced", "health": "Healthy", "played": False}]}
    """

    @override
    @staticmethod
    def default() -> dict[str, Any]:
        return {"error": "no answer from the cluster", "applications": []}

    @override
    def command(self, namespace: str) -> str:
        if not _NAME.match(namespace):
            raise ValueError(f"not a namespace: {namespace!r}")
        return (
            "if command -v k3s >/dev/null; then k3s kubectl get applications.argoproj.io "
            f"-n {shlex.quote(namespace)} -o json --request-timeout=20s 2>&1 | python3 -c "
            f"{shlex.quote(_APPLICATIONS_PROGRAM)}; else echo 'error k3s is not installed'; fi"
        )

    @override
    def process(self, output: list[str]) -> dict[str, Any]:
        applications = []
        for line in output:
            words = line.split()
            if words and words[0] == "error":
                return {"error": " ".join(words[1:]), "applications": []}
            if len(words) == 5 and words[0] == "application":
                applications.append({"name": words[1], "sync": words[2], "health": words[3],
                                     "played": words[4] == "stand-in"})
        return {"error": None, "applications": applications}
