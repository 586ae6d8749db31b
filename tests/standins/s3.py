"""Stand-in for S3-compatible object storage: moto's S3 server on the loopback address.

Only for tests (PyPI `moto[server]`, never shipped). It speaks the S3 protocol to real
clients (restic, boto3) but enforces no access policy.

Example:

    with s3_server() as endpoint:
        restic init with RESTIC_REPOSITORY=s3:{endpoint}/bucket/prefix
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from moto.server import ThreadedMotoServer


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """Run the stand-in for the block; yields its endpoint, `http://127.0.0.1:<port>`."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
