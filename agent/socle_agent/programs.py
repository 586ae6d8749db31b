"""Run an outside program (pg_dump, pg_restore, psql, ...) under the job's rules.

One way for every source: the program runs in its own process group, its output can
be poured into a backup file chunk by chunk, its error lines handed over as they come,
and it is killed (with everything it started) when the agent stops or the job's
deadline passes. Its error output's tail goes into the error message.

Example:

    with writer.file("dump") as out:
        run_program(["pg_dump", "--format=custom", ...], context, stdout=out)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from socle_agent.base import AgentError, JobContext

CHUNK_BYTES = 1 << 20
TAIL_LINES = 20
POLL_SECONDS = 0.5


class ProgramFailed(AgentError):
    """A program exited with an error; the message holds the tail of what it said, and
    `status` its exit status."""

    def __init__(self, message: str, status: int = -1) -> None:
        super().__init__(message)
        self.status = status


class OutputSink(Protocol):
    """Where a program's output goes: a backup file (`HashingWriter`), or memory."""

    def write(self, data: bytes) -> object:
        """Take the next chunk of output."""


def run_program(
    argv: list[str],
    context: JobContext,
    *,
    env: Mapping[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
    stdout: OutputSink | None = None,
    stdin: bytes | None = None,
    on_line: Callable[[str], None] | None = None,
) -> list[str]:
    """Run `argv` to its end within the job's deadline; return the tail of its error lines.

    `stdout` receives what it prints (else it goes nowhere); `stdin` is given to it from
    an in-memory file (so no secret it holds touches the disk); `on_line` receives each
    line it writes on stderr. Raises ProgramFailed when it exits with an error, and
    JobAborted or DeadlineExceeded (after killing it) from `context.check`.
    """
    program = Path(argv[0]).name
    stdin_fd = _memory_file(stdin) if stdin is not None else None
    try:
        process = subprocess.Popen(
            argv,
            stdin=stdin_fd if stdin_fd is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            pass_fds=pass_fds,
            start_new_session=True,
        )
    finally:
        if stdin_fd is not None:
            os.close(stdin_fd)
    tail: list[str] = []
    try:
        _follow(process, context, stdout, on_line, tail, program)
    except BaseException:
        _kill(process)
        raise
    finally:
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    if process.returncode != 0:
        message = "\n".join(line for line in tail if line)
        raise ProgramFailed(f"{program} exited with {process.returncode}: {message}",
                            process.returncode)
    return tail


def _follow(
    process: subprocess.Popen[bytes],
    context: JobContext,
    stdout: OutputSink | None,
    on_line: Callable[[str], None] | None,
    tail: list[str],
    program: str,
) -> None:
    assert process.stderr is not None
    streams = {process.stderr.fileno(): "err"}
    if stdout is not None:
        assert process.stdout is not None
        out_fd = process.stdout.fileno()
        with contextlib.suppress(OSError):
            # A larger pipe means fewer wake-ups of both processes per megabyte.
            fcntl.fcntl(out_fd, fcntl.F_SETPIPE_SZ, CHUNK_BYTES)
        streams[out_fd] = "out"
    pending = b""
    while streams:
        context.check(f"waiting for {program}")
        ready, _, _ = select.select(list(streams), [], [], POLL_SECONDS)
        for fd in ready:
            chunk = os.read(fd, CHUNK_BYTES)
            if not chunk:
                del streams[fd]
                continue
            if streams[fd] == "out":
                assert stdout is not None
                stdout.write(chunk)
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                _line(raw, on_line, tail)
    if pending:
        _line(pending, on_line, tail)
    while True:
        context.check(f"waiting for {program} to exit")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=POLL_SECONDS)
            return


def _line(raw: bytes, on_line: Callable[[str], None] | None, tail: list[str]) -> None:
    text = raw.decode("utf-8", "replace").rstrip()
    tail.append(text)
    del tail[:-TAIL_LINES]
    if on_line is not None:
        on_line(text)


def _kill(process: subprocess.Popen[bytes]) -> None:
    # The whole group: pg_dump -j and pg_restore -j fork workers of their own.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _memory_file(data: bytes) -> int:
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
