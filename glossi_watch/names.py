"""Which paths in a hot folder are candidates, and walking a folder for them.

A candidate is a path inside the folder (at its top level, or in subfolders
when ``subfolders = "recursive"``) whose name matches one of the folder's
``include`` patterns (``*.glb`` by default, in any case), none of its
``exclude`` patterns, and none of :data:`IGNORED_PATTERNS`: the names that
copy tools, editors and operating systems write beside or before the real
file. A tool that writes under a temporary name and renames at the end is
thus seen once, under the final name.

The walk never enters ``done/``, ``failed/``, hidden folders or symlinked
folders, so its cost follows what is waiting, not the archive's size.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from glossi_watch.config import FolderConfig

IGNORED_PATTERNS = (
    ".*",  # dotfiles: macOS ._x, .DS_Store, rsync .x.AbC123, .syncthing.*.tmp
    "~$*",  # Office lock files
    "Thumbs.db",
    "desktop.ini",
    "*.part",
    "*.partial",
    "*.filepart",
    "*.crdownload",
    "*.tmp",
    "*.download",
)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    folded = name.casefold()
    return any(fnmatch.fnmatchcase(folded, pattern.casefold()) for pattern in patterns)


def is_candidate_name(name: str, folder: FolderConfig) -> bool:
    """Whether a file called ``name`` may be an artist's model to upload."""
    if _matches(name, IGNORED_PATTERNS):
        return False
    return _matches(name, folder.include) and not _matches(name, folder.exclude)


def relative_candidate(path: Path, folder: FolderConfig) -> str | None:
    """``path`` relative to the folder if it is a candidate there, else None."""
    try:
        relative = path.relative_to(folder.path)
    except ValueError:
        return None
    parts = relative.parts
    if not parts or not is_candidate_name(parts[-1], folder):
        return None
    if len(parts) > 1 and folder.subfolders != "recursive":
        return None
    for depth in range(1, len(parts)):
        directory = folder.path.joinpath(*parts[:depth])
        if _excluded_directory(directory, folder):
            return None
    return relative.as_posix()


def _excluded_directory(directory: Path, folder: FolderConfig) -> bool:
    return directory.name.startswith(".") or directory in (
        folder.done_dir,
        folder.failed_dir,
    )


def walk_candidates(folder: FolderConfig) -> Iterator[Path]:
    """Every candidate path in the folder, without following links.

    Raises OSError when the folder itself cannot be read.
    """
    pending = [folder.path]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            if directory == folder.path:
                raise
            continue  # A subfolder we may not read is skipped, not fatal.
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if folder.subfolders == "recursive" and not _excluded_directory(
                    path, folder
                ):
                    pending.append(path)
            elif relative_candidate(path, folder) is not None:
                yield path


def has_linked_parent(folder: FolderConfig, rel_path: str) -> bool:
    """Whether a folder on the way to ``rel_path`` is now a symbolic link.

    The walk never enters symlinked folders, but a subfolder can be swapped
    for a link after a file in it was found; every later use of the path
    checks again so that nothing outside the folder is read or moved.
    """
    parts = PurePosixPath(rel_path).parts[:-1]
    for depth in range(1, len(parts) + 1):
        try:
            status = os.lstat(folder.path.joinpath(*parts[:depth]))
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(status.st_mode):
            return True
    return False
