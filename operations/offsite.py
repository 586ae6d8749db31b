"""The node's off-site restic repository."""

from __future__ import annotations

from collections.abc import Generator

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.api.exceptions import OperationError

from facts.offsite_repository import OffsiteRepository
from socle.offsite_files import RESTIC_WRAPPER

INIT_TIMEOUT_S = 600


@operation()
def repository(wrapper: str = RESTIC_WRAPPER) -> Generator[StringCommand, None, None]:
    """
    Make the off-site repository exist: ``restic init`` where its folder holds none.

    + wrapper: the restic wrapper that reads the node's off-site settings

    A repository that exists but does not open (a wrong password, an unreachable host,
    a refused login) fails the operation with restic's own words, which never hold the
    password; it is never initialised over.

    **Example:**

    .. code:: python

        offsite.repository(name="Off-site repository ready")
    """
    found = host.get_fact(OffsiteRepository, wrapper=wrapper)
    if found["state"] == "ready":
        host.noop("the off-site repository opens with the node's settings")
        return
    if found["state"] == "error":
        raise OperationError(f"the off-site repository does not open: {found['message']}")
    yield StringCommand("timeout", str(INIT_TIMEOUT_S), QuoteString(wrapper), "init")
