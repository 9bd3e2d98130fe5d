"""Writers that put files into a hot folder the way real tools do."""

from __future__ import annotations

import os
import time
from pathlib import Path

MB = 1024 * 1024


def write_in_pieces(path: Path, data: bytes, *, piece: int, delay: float) -> None:
    """One open file, written front to back with pauses (a slow copy)."""
    with path.open("wb") as out:
        for start in range(0, len(data), piece):
            out.write(data[start : start + piece])
            out.flush()
            time.sleep(delay)


def preallocate_then_fill(
    path: Path,
    data: bytes,
    *,
    piece: int,
    delay: float,
    stall_at: int | None = None,
    stall: float = 0.0,
) -> None:
    """Explorer-style: the file has its final size at once, then fills in.

    With ``stall_at``, the writer holds the file open and idle for ``stall``
    seconds once that many bytes are written (a copy stuck on the VPN).
    """
    with path.open("wb") as out:
        out.truncate(len(data))
        out.flush()
        for start in range(0, len(data), piece):
            if stall_at is not None and start >= stall_at:
                time.sleep(stall)
                stall_at = None
            out.seek(start)
            out.write(data[start : start + piece])
            out.flush()
            time.sleep(delay)


def write_close_reopen_append(
    path: Path, data: bytes, *, split: int, pause: float
) -> None:
    """An exporter that writes, closes, comes back later and appends."""
    path.write_bytes(data[:split])
    time.sleep(pause)
    with path.open("ab") as out:
        out.write(data[split:])


def write_then_rename(
    directory: Path, temp_name: str, final_name: str, data: bytes
) -> None:
    """rsync, browsers, WinSCP and friends: a temporary name, then a rename."""
    temp = directory / temp_name
    write_in_pieces(temp, data, piece=max(1, len(data) // 4), delay=0.05)
    os.rename(temp, directory / final_name)
