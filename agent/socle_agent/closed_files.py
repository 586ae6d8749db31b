"""Learn when a program closes each file it wrote in a folder (Linux inotify, IN_CLOSE_WRITE).

pg_dump's directory format writes one file per table from several workers; watching
the folder lets the agent checksum each file as soon as it is complete, while the dump
goes on, instead of reading everything again at the end.

Example:

    with ClosedFiles(folder) as closed:
        ...                      # a program writes into `folder`
        for name in closed.poll(timeout=0.5):
            print(name, "is complete")
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")


class ClosedFiles:
    """The names of files closed after writing in one folder, as they come."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd = -1

    def __enter__(self) -> ClosedFiles:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(fd, os.fsencode(self.folder), IN_CLOSE_WRITE) < 0:
            error = ctypes.get_errno()
            os.close(fd)
            raise OSError(error, f"cannot watch {self.folder}")
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def poll(self, timeout: float) -> list[str]:
        """Names closed since the last call, waiting up to `timeout` seconds for the first."""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return []
        names = []
        try:
            while True:
                data = os.read(self._fd, 65536)
                offset = 0
                while offset < len(data):
                    _, _, _, length = _EVENT.unpack_from(data, offset)
                    raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
                    offset += _EVENT.size + length
                    name = raw.rstrip(b"\0")
                    if name:
                        names.append(os.fsdecode(name))
        except BlockingIOError:
            pass
        return names
