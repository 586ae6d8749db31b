"""A node session for `socle verify`'s checks without a node: canned answers."""

from __future__ import annotations

from typing import Any


class FakeNode:
    """Answers ``k3s --version`` with ``version_line`` and each fact by its class name."""

    def __init__(self, version_line: str, facts: dict[str, Any]) -> None:
        self.version_line = version_line
        self.facts = facts

    def run(self, command: str, *, sudo: bool = False, timeout: int = 30) -> tuple[bool, str]:
        """Only ``k3s --version`` is asked of it."""
        assert "--version" in command, command
        return True, self.version_line + "\n"

    def fact(self, fact: Any, **kwargs: Any) -> Any:
        """The canned value of ``fact``."""
        return self.facts[fact.__name__]
