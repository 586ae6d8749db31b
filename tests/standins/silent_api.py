"""Stand-in for a Kubernetes API server that accepts connections and never answers.

Only for tests: a TCP listener on 127.0.0.1 that accepts every connection and holds it
open without a byte in return, as an API server stuck behind a dead proxy would. A
client without a timeout would wait forever. `kubeconfig()` writes a kubeconfig (token,
mode 0600) pointing at it.

Example:

    with SilentApi() as api:
        path = api.kubeconfig(tmp_path / "kubeconfig")
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path


class SilentApi:
    """Accepts on 127.0.0.1:`port`, answers nothing, closes everything on exit."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def __enter__(self) -> SilentApi:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for this server with a bearer token, mode 0600."""
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            "clusters:\n- name: silent\n  cluster:\n"
            f"    server: https://127.0.0.1:{self.port}\n    insecure-skip-tls-verify: true\n"
            "users:\n- name: agent\n  user:\n    token: not-a-real-token\n"
            "contexts:\n- name: silent\n  context: {cluster: silent, user: agent}\n"
            "current-context: silent\n"
        )
        path.chmod(0o600)
        return path
