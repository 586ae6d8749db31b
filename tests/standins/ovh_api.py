"""Stand-in for the OVH API's VPS snapshot endpoints; only for tests, never shipped.

The OVH API cannot be reached where the tests run. This HTTP server on the loopback
address answers the calls `socle snapshot-vps` makes, at the API's real paths and with
its real shapes (``vps.Snapshot``, ``vps.Task``), and checks every request's signature
the way the API does, so the real ``ovh`` client is what the tests drive:

- ``GET /1.0/auth/time``: the server's time, for the client's clock delta;
- ``GET|DELETE /1.0/vps/{serviceName}/snapshot``: the one snapshot (404 without one);
  DELETE answers a ``deleteSnapshot`` task;
- ``POST /1.0/vps/{serviceName}/createSnapshot``: a ``createSnapshot`` task, refused while
  a snapshot exists or without the snapshot option, as the API does;
- ``POST /1.0/vps/{serviceName}/snapshot/revert``: a ``revertSnapshot`` task;
- ``GET /1.0/vps/{serviceName}/tasks/{id}``: the task; it moves on at each look and, as
  the API does, is gone (404) once done (``show_done`` shows "done" once first).

Example::

    with OvhApiStandIn(service="vps-1.vps.ovh.net") as api:
        ovh.client.ENDPOINTS["stand-in"] = api.endpoint
        client = ovh.Client("stand-in", api.application_key, api.application_secret,
                            api.consumer_key)
        client.post("/vps/vps-1.vps.ovh.net/createSnapshot", description="x")
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

_PATH = re.compile(r"^/1\.0/vps/(?P<service>[^/]+)(?P<rest>/.*)$")


@dataclass
class Task:
    """A task in progress: it advances ``step`` percent at each look."""

    id: int
    type: str
    state: str = "todo"
    progress: int = 0
    ends_in: str = "done"
    on_done: Any = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "state": self.state,
                "progress": self.progress, "date": "2025-01-31T02:00:00+00:00"}  # fmt: skip


@dataclass
class VpsState:
    """What the stand-in knows of the one VPS; tests change it to break one thing."""

    service: str
    snapshot: dict[str, Any] | None = None
    snapshot_option: bool = True
    step: int = 50
    # A task type listed here ends in this state instead of "done" ("error", "cancelled").
    failing: dict[str, str] = field(default_factory=dict)
    # A task type listed here never moves on (stays "doing").
    stuck: set[str] = field(default_factory=set)
    # The API usually drops a task as soon as it is done (the look that would see it done
    # gets 404); with this on, one look sees "done" first.
    show_done: bool = False
    tasks: dict[int, Task] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    reverted_to: list[str] = field(default_factory=list)
    next_id: int = 1000


class OvhApiStandIn:
    """The stand-in server; ``endpoint`` is what the ``ovh`` client is pointed at."""

    application_key = "stand-in-application-key"
    application_secret = "stand-in-application-secret"
    consumer_key = "stand-in-consumer-key"

    def __init__(self, service: str) -> None:
        self.state = VpsState(service)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/1.0"

    def __enter__(self) -> OvhApiStandIn:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                with api.lock:
                    status, answer = api.answer(method, self.path, body, self.headers)
                self._answer(status, answer)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._handle("DELETE")

        return Handler

    def signature_ok(self, method: str, path: str, body: str, headers: Any) -> bool:
        """Check the request's signature as the API does: SHA-1 of secret, consumer key,
        method, full URL, body and timestamp, joined by '+'."""
        if headers.get("X-Ovh-Application") != self.application_key:
            return False
        if headers.get("X-Ovh-Consumer") != self.consumer_key:
            return False
        stamp = headers.get("X-Ovh-Timestamp", "")
        url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        text = "+".join([self.application_secret, self.consumer_key, method, url, body, stamp])
        wanted = "$1$" + hashlib.sha1(text.encode()).hexdigest()
        return headers.get("X-Ovh-Signature") == wanted and abs(int(stamp) - time.time()) < 60

    def answer(self, method: str, path: str, body: str, headers: Any) -> tuple[int, Any]:
        """Return (status, JSON body) for one request."""
        state = self.state
        if path == "/1.0/auth/time":
            return 200, int(time.time())
        if not self.signature_ok(method, path, body, headers):
            return 403, {"errorCode": "INVALID_CREDENTIAL", "message": "Invalid credentials"}
        match = _PATH.match(path)
        if match is None or match["service"] != state.service:
            return 404, {"message": f"The requested object (serviceName = {path}) does not exist"}
        rest = match["rest"]
        state.calls.append(f"{method} {rest}")
        if rest == "/snapshot" and method == "GET":
            if state.snapshot is None:
                return 404, {"message": "The requested object (snapshot) does not exist"}
            return 200, state.snapshot
        if rest == "/snapshot" and method == "DELETE":
            if state.snapshot is None:
                return 404, {"message": "The requested object (snapshot) does not exist"}
            return 200, self._new_task("deleteSnapshot", self._delete_snapshot).as_json()
        if rest == "/createSnapshot" and method == "POST":
            if not state.snapshot_option:
                return 403, {"message": "The snapshot option is not enabled on this VPS"}
            if state.snapshot is not None:
                return 400, {"message": "A snapshot already exists for this VPS"}
            description = json.loads(body or "{}").get("description", "")
            task = self._new_task("createSnapshot", lambda: self._create_snapshot(description))
            return 200, task.as_json()
        if rest == "/snapshot/revert" and method == "POST":
            if state.snapshot is None:
                return 404, {"message": "The requested object (snapshot) does not exist"}
            snapshot_id = str(state.snapshot["id"])
            task = self._new_task("revertSnapshot", lambda: state.reverted_to.append(snapshot_id))
            return 200, task.as_json()
        task_match = re.fullmatch(r"/tasks/(\d+)", rest)
        if task_match and method == "GET":
            return self._look_at_task(int(task_match[1]))
        return 404, {"message": f"no {method} {rest} in this stand-in"}

    def _new_task(self, task_type: str, on_done: Any) -> Task:
        state = self.state
        state.next_id += 1
        task = Task(state.next_id, task_type, ends_in=state.failing.get(task_type, "done"),
                    on_done=on_done)  # fmt: skip
        state.tasks[task.id] = task
        return task

    def _look_at_task(self, task_id: int) -> tuple[int, Any]:
        task = self.state.tasks.get(task_id)
        if task is None:
            return 404, {"message": f"The requested object (id = {task_id}) does not exist"}
        if task.state in ("done",):
            # The API lists unfinished tasks only: a done task is gone at the next look.
            del self.state.tasks[task_id]
            return 404, {"message": f"The requested object (id = {task_id}) does not exist"}
        if task.type in self.state.stuck:
            task.state = "doing"
            return 200, task.as_json()
        if task.state in ("error", "cancelled"):
            return 200, task.as_json()
        task.state = "doing"
        task.progress = min(100, task.progress + self.state.step)
        if task.progress >= 100:
            task.state = task.ends_in
            if task.ends_in == "done":
                task.on_done()
                if not self.state.show_done:
                    del self.state.tasks[task_id]
                    return 404, {"message": f"The requested object (id = {task_id}) does not exist"}
        return 200, task.as_json()

    def _delete_snapshot(self) -> None:
        self.state.snapshot = None

    def _create_snapshot(self, description: str) -> None:
        self.state.snapshot = {
            "id": f"snapshot-{self.state.next_id}",
            "description": description,
            "creationDate": "2025-01-31T02:00:00+00:00",
            "region": "GRA",
        }
