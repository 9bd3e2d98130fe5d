"""What kind of file system a path lives on, and whether it is remote.

Two decisions depend on it: SQLite's locking is not safe on network file
systems, so the state store refuses to live on one; and the operating
system sends no change events for files written on a share by other
machines, so such folders are polled (a later watcher mode uses this).

Linux answers from ``/proc/self/mountinfo`` (the longest mount point that
contains the path); elsewhere the type is reported as ``unknown``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
NETWORK_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "afs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "davfs",
        "ncpfs",
        "virtiofs",
    }
)


@dataclass(frozen=True)
class Mount:
    mount_point: Path
    fs_type: str
    source: str

    @property
    def is_remote(self) -> bool:
        """Network file systems and FUSE mounts (sshfs, rclone, s3fs, ...)."""
        kind = self.fs_type.lower()
        return kind in NETWORK_TYPES or kind == "fuse" or kind.startswith("fuse.")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    for code, char in (
        ("\\040", " "),
        ("\\011", "\t"),
        ("\\012", "\n"),
        ("\\134", "\\"),
    ):
        field = field.replace(code, char)
    return field


def _mounts(mountinfo: Path) -> list[Mount]:
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 2:
            mounts.append(Mount(Path(_unescape(fields[4])), tail[0], tail[1]))
    return mounts


def mount_of(path: Path, *, mountinfo: Path = MOUNTINFO) -> Mount:
    """The mount that holds ``path`` (the nearest existing ancestor's)."""
    target = Path(os.path.realpath(path))
    best = Mount(Path("/"), "unknown", "")
    for mount in _mounts(mountinfo):
        inside = target == mount.mount_point or mount.mount_point in target.parents
        if inside and len(mount.mount_point.parts) >= len(best.mount_point.parts):
            best = mount
    return best


def looks_unmounted(path: Path) -> bool:
    """Whether ``path`` sits on the root file system (a share not mounted).

    Used for folders configured with ``expect_mount``: before the share is
    mounted, its mount point is an empty folder on ``/``.
    """
    return mount_of(path).mount_point == Path("/")
