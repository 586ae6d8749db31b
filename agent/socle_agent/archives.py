"""Unpack a tar archive without letting any member land outside the target folder.

Python's tarfile has refused dangerous members with `extractall(filter="data")` since
3.12 and 3.11.4; older Pythons (Debian 12 ships 3.11.2) have no filters and would write
whatever the archive says, absolute paths and links included. `extract_all` uses the
"data" filter where it exists and applies the same refusals itself elsewhere: absolute
names, `..` components, links that point outside the folder (or anywhere, for absolute
symbolic links), devices and pipes. Files are written without their owner and with
write access for their owner only, as the filter does.

Example:

    with tarfile.open(archive, mode="r:gz") as tar:
        extract_all(tar, scratch)     # raises UnsafeMember (a tarfile.TarError)
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath

HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


class UnsafeMember(tarfile.TarError):
    """An archive member that could write outside the folder, or is not a plain file."""


def extract_all(tar: tarfile.TarFile, dest: Path, *, use_filter: bool = HAS_DATA_FILTER) -> None:
    """Extract every member of `tar` into `dest`, refusing unsafe ones (see the module).

    `use_filter` chooses tarfile's own "data" filter (the default where Python has it);
    without it, the members are checked here one by one before each is written.
    """
    if use_filter:
        tar.extractall(dest, filter="data")
        return
    root = os.path.realpath(dest)
    for member in tar:
        _check(member, root)
        tar.extract(member, root, set_attrs=False)
        written = os.path.join(root, member.name)
        if member.isreg():
            # the owner may read and write, others at most read: no set-id bits
            os.chmod(written, (member.mode & 0o755) | 0o600)
        elif member.isdir():
            os.chmod(written, (member.mode & 0o755) | 0o700)


def _check(member: tarfile.TarInfo, root: str) -> None:
    name = member.name
    if os.path.isabs(name) or PurePosixPath(name).is_absolute():
        raise UnsafeMember(f"refused archive member {name!r}: an absolute name")
    if ".." in PurePosixPath(name).parts:
        raise UnsafeMember(f"refused archive member {name!r}: it climbs out with '..'")
    if not _inside(os.path.realpath(os.path.join(root, name)), root):
        raise UnsafeMember(f"refused archive member {name!r}: it would land outside {root}")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeMember(f"refused archive member {name!r}: a device or pipe")
    if member.issym():
        if os.path.isabs(member.linkname):
            raise UnsafeMember(f"refused archive member {name!r}: a link to an absolute path")
        target = os.path.join(root, os.path.dirname(name), member.linkname)
        if not _inside(os.path.realpath(target), root):
            raise UnsafeMember(f"refused archive member {name!r}: a link out of {root}")
    elif member.islnk():
        target = os.path.join(root, member.linkname)
        if os.path.isabs(member.linkname) or not _inside(os.path.realpath(target), root):
            raise UnsafeMember(f"refused archive member {name!r}: a hard link out of {root}")
    elif not (member.isreg() or member.isdir()):
        raise UnsafeMember(f"refused archive member {name!r}: not a file or a folder")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)
