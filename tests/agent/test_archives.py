"""Unpacking archives safely: tarfile's "data" filter where Python has it, and the same
refusals on a Python without it (Debian 12's 3.11.2), checked on the same hostile archives."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from socle_agent.archives import HAS_DATA_FILTER, extract_all

# Both ways where this Python has the filter; the fallback alone where it has not.
WAYS = [pytest.param(False, id="checked-here")] + (
    [pytest.param(True, id="data-filter")] if HAS_DATA_FILTER else []
)


def archive(tmp_path: Path, *members: Callable[[tarfile.TarFile], None]) -> Path:
    path = tmp_path / "archive.tar"
    with tarfile.open(path, "w") as tar:
        for add in members:
            add(tar)
    return path


def regular(name: str, content: bytes = b"data", mode: int = 0o644) -> Callable[
        [tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(content), mode
        tar.addfile(info, io.BytesIO(content))
    return add


def special(name: str, kind: bytes, linkname: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        tar.addfile(info)
    return add


def unpack(path: Path, dest: Path, use_filter: bool) -> None:
    dest.mkdir(exist_ok=True)
    with tarfile.open(path) as tar:
        extract_all(tar, dest, use_filter=use_filter)


@pytest.mark.parametrize("use_filter", WAYS)
def test_plain_files_and_folders_are_unpacked_without_set_id_bits(
    tmp_path: Path, use_filter: bool
) -> None:
    path = archive(tmp_path, special("tls", tarfile.DIRTYPE), regular("tls/ca.key", b"key"),
                   regular("token", b"K10", mode=0o4777), special("link", tarfile.SYMTYPE, "token"))

    unpack(path, tmp_path / "out", use_filter)

    out = tmp_path / "out"
    assert (out / "tls" / "ca.key").read_bytes() == b"key"
    assert (out / "link").read_bytes() == b"K10"
    mode = stat.S_IMODE((out / "token").stat().st_mode)
    assert not mode & (stat.S_ISUID | stat.S_IWGRP | stat.S_IWOTH)


HOSTILE = {
    "absolute name": [regular("/tmp/socle-planted")],
    "climbing out": [regular("../planted")],
    "climbing out later": [special("a", tarfile.DIRTYPE), regular("a/../../planted")],
    "absolute symbolic link": [special("etc", tarfile.SYMTYPE, "/etc")],
    "symbolic link out": [special("up", tarfile.SYMTYPE, "../..")],
    "writing through a link out": [special("up", tarfile.SYMTYPE, ".."),
                                   regular("up/planted")],
    "hard link out": [special("passwd", tarfile.LNKTYPE, "/etc/passwd")],
    "character device": [special("null", tarfile.CHRTYPE)],
    "block device": [special("disk", tarfile.BLKTYPE)],
    "pipe": [special("fifo", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("use_filter", WAYS)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_member_that_could_escape_or_is_special_is_refused(
    tmp_path: Path, use_filter: bool, case: str
) -> None:
    path = archive(tmp_path, *HOSTILE[case])
    (tmp_path / "out").mkdir()

    if use_filter and case == "absolute name":
        # the data filter takes the leading "/" off and writes inside instead
        unpack(path, tmp_path / "out", use_filter)
        assert (tmp_path / "out" / "tmp" / "socle-planted").is_file()
    else:
        with pytest.raises(tarfile.TarError):
            unpack(path, tmp_path / "out", use_filter)

    assert not (tmp_path / "planted").exists()
    assert not os.path.lexists("/tmp/socle-planted")
    left = [p for p in (tmp_path / "out").rglob("*")]
    assert not [p for p in left if not (p.is_dir() or p.is_file() or p.is_symlink())]
