"""Put secrets on the node as root-only files, never in a command line or a diff."""

from __future__ import annotations

import hashlib
from collections.abc import Generator

from pyinfra import host
from pyinfra.api import HiddenValue, OperationValueError, QuoteString, StringCommand, operation

from facts.file_digest import FileDigest
from operations.private_upload import PrivateUploadCommand, check_secret_mode


@operation()
def secret_file(
    path: str,
    secret: HiddenValue,
    mode: str = "600",
    owner: str = "root:root",
) -> Generator[StringCommand | PrivateUploadCommand, None, None]:
    """
    Make ``path`` hold exactly the secret, readable by its owner only.

    + path: the file on the node
    + secret: the content, as a ``HiddenValue`` so pyinfra never prints it
    + mode: octal permissions, ``600`` unless a group must read it
    + owner: ``user:group``

    The content goes over SFTP into a folder only the login user can enter, then as root
    into a private file beside ``path`` that is renamed into place
    (``operations.private_upload``): it is never readable by another local user, never in
    a command line, the process list, ``--dry`` or ``--diff`` output, and nothing of it is
    left behind when a step fails. Only its SHA-256 is compared with the file on the node.

    **Example:**

    .. code:: python

        secret_files.secret_file(
            name="PostgreSQL password for the agent",
            path="/etc/socle/postgres-password",
            secret=HiddenValue(decrypt_value("secrets/prod.sops.yaml", "postgres_password")),
        )
    """
    if not isinstance(secret, HiddenValue):
        raise OperationValueError("secret_file needs its content as a HiddenValue")
    content = secret.unmask().encode()
    try:
        mode = check_secret_mode(mode)
        upload = PrivateUploadCommand(content, path, mode=mode, owner=owner)
    except ValueError as error:
        raise OperationValueError(f"{path}: {error}") from None
    wanted = {"sha256": hashlib.sha256(content).hexdigest(), "mode": mode, "owner": owner}
    current = host.get_fact(FileDigest, path=path)
    if current is not None and dict(current) == wanted:
        host.noop(f"{path} holds the wanted secret")
        return
    directory = path.rsplit("/", 1)[0] or "/"
    # A missing folder is made private; an existing one keeps its own mode.
    yield StringCommand(
        "test -d", QuoteString(directory), "|| install -d -m 0700", QuoteString(directory)
    )
    yield upload
