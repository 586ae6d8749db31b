"""Probes run from outside a test host: a TCP port scan, test listeners, SSH logins.

The scan and the listeners are Python programs run inside test containers (every test
host has python3); the SSH logins use the real OpenSSH client of this machine.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tests.harness.hosts import TestHost

# Non-blocking connects in large batches: a port that answers SYN with SYN-ACK is open;
# one that refuses or stays silent until the batch's deadline is not.
SCAN_PROGRAM = r"""
import resource, selectors, socket, sys, time
target, first, last, batch, wait = sys.argv[1], *map(int, sys.argv[2:5]), float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
batch = min(batch, hard - 64)
answered = []
for start in range(first, last + 1, batch):
    selector = selectors.DefaultSelector()
    for port in range(start, min(start + batch, last + 1)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((target, port))
        selector.register(sock, selectors.EVENT_WRITE, port)
    deadline = time.monotonic() + wait
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for key, _ in selector.select(remaining):
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                answered.append(key.data)
            selector.unregister(key.fileobj)
            key.fileobj.close()
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    selector.close()
print(" ".join(map(str, sorted(answered))))
"""

LISTENER_PROGRAM = r"""
import os, socket, sys, threading
def serve(port):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(16)
    while True:
        conn, _ = server.accept()
        conn.sendall(b"socle-test-listener\n")
        conn.close()
with open(sys.argv[1], "w") as pidfile:
    pidfile.write(str(os.getpid()))
for port in map(int, sys.argv[2:]):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
threading.Event().wait()
"""


# An unprivileged user's view of the node, as fast as it can look: every process's command
# line, and every file it can read under the folders given, searched for the markers.
SPY_PROGRAM = r"""
import base64, json, os, sys
# base64 on the command line: the markers themselves would be seen in the spy's own
markers = base64.b64decode(sys.argv[1]).split(b"\n")
stop, out, roots = sys.argv[2], sys.argv[3], sys.argv[4:]
hits, looks = set(), 0
def seen(blob, where):
    for marker in markers:
        if marker in blob:
            hits.add(where)
while not os.path.exists(stop):
    looks += 1
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    seen(handle.read(), f"the command line of process {pid}")
            except OSError:
                pass
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    with open(path, "rb") as handle:
                        seen(handle.read(4096), path)
                except OSError:
                    pass
json.dump({"hits": sorted(hits), "looks": looks}, open(out, "w"))
"""


@dataclass
class SecretSpy:
    """An unprivileged user (``spy``) on ``node`` looking for ``markers`` in every command
    line and every file it can read under ``roots``, until stopped.

    Example::

        spy = SecretSpy(node, [secret], ["/tmp", "/etc/socle"]).start()
        ...  # deploy
        assert spy.stop()["hits"] == []
    """

    node: TestHost
    markers: Sequence[str]
    roots: Sequence[str]
    home: str = "/home/spy"

    def start(self) -> SecretSpy:
        """Create the user if needed and start looking."""
        self.node.exec("id spy >/dev/null 2>&1 || useradd --create-home spy")
        self.node.exec(["python3", "-c",
                        f"open('/usr/local/bin/spy.py','w').write({SPY_PROGRAM!r})"])
        self.node.exec(f"rm -f {self.home}/stop {self.home}/report.json")
        argv = ["runuser", "-u", "spy", "--", "python3", "/usr/local/bin/spy.py",
                base64.b64encode("\n".join(self.markers).encode()).decode(),
                f"{self.home}/stop", f"{self.home}/report.json",
                *self.roots]  # fmt: skip
        self.node.exec_background(" ".join(shlex.quote(a) for a in argv))
        return self

    def stop(self) -> dict[str, object]:
        """Stop looking; return ``{"hits": [where a marker was seen], "looks": rounds}``."""
        self.node.exec(f"touch {self.home}/stop")
        for _ in range(300):
            done = self.node.exec(f"cat {self.home}/report.json", check=False)
            if done.returncode == 0 and done.stdout:
                report: dict[str, object] = json.loads(done.stdout)
                return report
            time.sleep(0.1)
        raise AssertionError("the spy never reported")


def scan_tcp(scanner: TestHost, target: str, wait: float = 3.0) -> list[int]:
    """Return the TCP ports of ``target`` that accept a connection from ``scanner``."""
    argv = ["python3", "-c", SCAN_PROGRAM, target, "1", "65535", "16000", str(wait)]
    result = scanner.exec(argv)
    return [int(port) for port in result.stdout.split()]


def _in_netns(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def _pidfile(netns: str | None) -> str:
    return f"/run/socle-test-listener-{netns or 'host'}.pid"


def start_listener(node: TestHost, ports: Iterable[int], netns: str | None = None) -> None:
    """Listen on all addresses of ``node`` (or of its network namespace ``netns``) on
    ``ports``, and wait until the ports are open."""
    wanted = sorted(ports)
    argv = [*_in_netns(netns), "python3", "-c", LISTENER_PROGRAM, _pidfile(netns)]
    node.exec_background(" ".join(shlex.quote(a) for a in [*argv, *map(str, wanted)]))
    wait_until(
        lambda: all(_listening(node, port, netns) for port in wanted),
        f"listener on {wanted} in {node.name}",
    )


def stop_listener(node: TestHost, netns: str | None = None) -> None:
    """Stop the listener started by ``start_listener`` (by its recorded process id)."""
    pidfile = shlex.quote(_pidfile(netns))
    node.exec(f"if [ -f {pidfile} ]; then kill $(cat {pidfile}); rm -f {pidfile}; fi")


def _listening(node: TestHost, port: int, netns: str | None) -> bool:
    argv = [*_in_netns(netns), "ss", "-Hltn", f"sport = :{port}"]
    return bool(node.exec(argv, check=False).stdout.strip())


def tcp_answers(client: TestHost, address: str, port: int, wait: int = 3) -> bool:
    """Whether ``address:port`` accepts a TCP connection from ``client`` within ``wait`` s."""
    result = client.exec(["nc", "-z", "-w", str(wait), address, str(port)], check=False)
    return result.returncode == 0


def password_login(address: str, user: str, password: str) -> subprocess.CompletedProcess[str]:
    """Try a password login with the real OpenSSH client (through sshpass)."""
    argv = [
        "sshpass", "-p", password,
        "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "PubkeyAuthentication=no", "-o", "GSSAPIAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive",
        "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10",
        "-o", "BatchMode=no", "-o", "LogLevel=ERROR",
        f"{user}@{address}", "true",
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def key_login(address: str, user: str, key_path: str) -> subprocess.CompletedProcess[str]:
    """Try a public-key login with the real OpenSSH client."""
    argv = [
        "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
        "-o", "IdentitiesOnly=yes", "-i", key_path, f"{user}@{address}", "true",
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def eventually(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether ``condition`` holds within ``timeout`` seconds, polled every second."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    """Poll ``condition`` until true; fail after a deadline meant never to be reached."""
    if not eventually(condition, timeout):
        raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")
