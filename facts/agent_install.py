"""Read what the node agent installation holds, and the Python it must be built for."""

from __future__ import annotations

import shlex
from typing import TypedDict

from pyinfra.api import FactBase
from typing_extensions import override


class AgentInstallState(TypedDict):
    """The installed agent (``None`` fields when absent) and the node's Python and CPU."""

    digest: str | None
    version: str | None
    python: str
    machine: str


class AgentInstall(FactBase[AgentInstallState]):
    """
    Returns the installed agent's source digest and version, with the node's Python
    version and machine type (to pick the wheels the agent's dependencies need).

    + prefix: the agent's virtual environment, e.g. ``/opt/socle-agent``

    .. code:: python

        {"digest": "3f2a...", "version": "socle-agent 0.1.0", "python": "3.12",
         "machine": "x86_64"}
    """

    @override
    @staticmethod
    def default() -> AgentInstallState:
        return {"digest": None, "version": None, "python": "", "machine": ""}

    @override
    def command(self, prefix: str) -> str:
        quoted = shlex.quote(prefix)
        # Absent or broken is "not installed", never an error: the operation reinstalls.
        return (
            "python3 -c 'import platform, sys; "
            'print("%d.%d" % sys.version_info[:2], platform.machine())\'; '
            f"if [ -f {quoted}/SOURCE_DIGEST ] && [ -x {quoted}/bin/socle-agent ]; then "
            f"cat {quoted}/SOURCE_DIGEST; {quoted}/bin/socle-agent --version 2>/dev/null; fi; true"
        )

    @override
    def process(self, output: list[str]) -> AgentInstallState:
        python, _, machine = output[0].partition(" ") if output else ("", "", "")
        installed = [line.strip() for line in output[1:3]]
        return {
            "digest": installed[0] if len(installed) == 2 else None,
            "version": installed[1] if len(installed) == 2 else None,
            "python": python.strip(),
            "machine": machine.strip(),
        }
