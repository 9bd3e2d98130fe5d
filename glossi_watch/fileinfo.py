"""Opening candidate files safely, and knowing a file is still the same one.

A file in a hot folder is opened once with ``O_NOFOLLOW`` and ``O_NONBLOCK``,
so a symlink is refused instead of followed and a FIFO named ``x.glb`` cannot
block the daemon. The descriptor is then checked with ``fstat``: only a
regular file with a single link counts (a hard link would let a file from
outside the folder be uploaded under another name). Every later read goes
through that descriptor, and :class:`FileIdentity` tells whether the path
still names the same, unchanged file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

READ_PIECE_BYTES = 1024 * 1024


class NotRegularFileError(Exception):
    """The path is a symlink, a hard link, a FIFO, a socket or a device."""


@dataclass(frozen=True)
class FileIdentity:
    """What we know of a file: where it lives on disk and its size and mtime."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileIdentity:
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def open_regular(path: Path) -> int:
    """Open ``path`` for reading without following links or blocking.

    Raises :class:`NotRegularFileError` for anything but a regular file with
    one link, and ``OSError`` when the file cannot be opened.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (40, 62):  # ELOOP (Linux, macOS): the path is a symlink
            raise NotRegularFileError(f"{path.name} is a symbolic link") from exc
        raise
    try:
        status = os.fstat(fd)
        _check_regular(path, status)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(path: Path, status: os.stat_result) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise NotRegularFileError(f"{path.name} is not a regular file")
    if status.st_nlink != 1:
        raise NotRegularFileError(
            f"{path.name} has {status.st_nlink} hard links; only a file with one "
            "name inside the folder is accepted"
        )


def lstat_regular(path: Path) -> os.stat_result:
    """``lstat`` that refuses what :func:`open_regular` would refuse."""
    status = os.lstat(path)
    _check_regular(path, status)
    return status


def hash_descriptor(
    fd: int, on_piece: Callable[[], None] | None = None
) -> tuple[str, str]:
    """The sha256 (hex) and md5 (base64, as Content-MD5 wants) of an open file.

    ``on_piece`` is called after each piece read, so a long hash can keep a
    service manager's watchdog fed.
    """
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    offset = 0
    while piece := os.pread(fd, READ_PIECE_BYTES, offset):
        sha256.update(piece)
        md5.update(piece)
        offset += len(piece)
        if on_piece is not None:
            on_piece()
    return sha256.hexdigest(), base64.b64encode(md5.digest()).decode("ascii")
