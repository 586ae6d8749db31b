"""Put secrets on the node as root-only files, never in a command line or a diff."""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from io import BytesIO

from pyinfra import host
from pyinfra.api import (
    FileUploadCommand,
    HiddenValue,
    OperationValueError,
    QuoteString,
    StringCommand,
    operation,
)

from facts.file_digest import FileDigest


@operation()
def secret_file(
    path: str,
    secret: HiddenValue,
    mode: str = "600",
    owner: str = "root:root",
) -> Generator[StringCommand | FileUploadCommand, None, None]:
    """
    Make ``path`` hold exactly the secret, readable by its owner only.

    + path: the file on the node
    + secret: the content, as a ``HiddenValue`` so pyinfra never prints it
    + mode: octal permissions, ``600`` unless a group must read it
    + owner: ``user:group``

    The content is uploaded over SFTP to a temporary name and moved into place, so it
    never appears in a command line, the process list, ``--dry`` or ``--diff`` output.
    Only its SHA-256 is compared with the file on the node.

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
    if mode.lstrip("0")[:1] not in ("4", "6") or mode.lstrip("0")[1:] not in ("00", "40"):
        raise OperationValueError(f"{path}: a secret's mode must be 600, 640, 400 or 440")
    content = secret.unmask().encode()
    wanted = {"sha256": hashlib.sha256(content).hexdigest(), "mode": mode.lstrip("0"),
              "owner": owner}
    current = host.get_fact(FileDigest, path=path)
    if current is not None and dict(current) == wanted:
        host.noop(f"{path} holds the wanted secret")
        return
    temp = f"{path}.socle-new"
    directory = path.rsplit("/", 1)[0] or "/"
    # Created empty and private first, so the upload never lands in a readable file;
    # an existing folder keeps its own mode.
    yield StringCommand(
        "{ test -d", QuoteString(directory), "|| install -d -m 0700", QuoteString(directory),
        "; } && install -m 0600 /dev/null", QuoteString(temp),
    )
    yield FileUploadCommand(BytesIO(content), temp)
    yield StringCommand(
        "chown", owner, QuoteString(temp),
        "&& chmod", mode, QuoteString(temp),
        "&& mv -f", QuoteString(temp), QuoteString(path),
    )
