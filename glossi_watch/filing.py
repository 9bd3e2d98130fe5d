"""Durable file operations: filing an artist's file, and writing sidecars.

The invariant kept here is that an artist's file is never lost, overwritten,
truncated or left in two places, even if the process is killed at any
instruction, and that calling the same operation again afterwards finishes
it. Each step is either atomic (a rename that refuses to replace) or leaves a
state that :func:`move_file` recognises and completes. Directories are
fsynced after every rename, link and unlink, so finished steps also survive a
power cut on filesystems that honour fsync.

Bytes on their way to a name are written to ``.glossi-partial.<key>`` beside
it, where ``<key>`` is the first 24 hex digits of the SHA-256 of the final
name's bytes. The name is fixed per destination so that a later call can find
and remove what a killed one left; watchers skip it with
:func:`is_partial_name`. One call at a time per destination: concurrent calls
for the same destination are not supported (a move may then fail, but it
checks what it renamed before removing a source, so the file is not lost).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from glossi_watch.errors import FilingError

CHUNK_BYTES = 1024 * 1024
NAME_MAX_BYTES = 255
PARTIAL_PREFIX = ".glossi-partial."

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1  # Linux, <linux/fs.h>
_RENAME_EXCL = 0x4  # macOS, <stdio.h>
# What renameat2 and renamex_np answer when the kernel or the filesystem cannot
# refuse to replace; a hard link then gives the same guarantee in two steps.
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP})


def sha256_of(path: Path) -> str:
    """The SHA-256 of the file at ``path`` in lowercase hex, read in pieces.

    Memory use does not grow with the file. Raises FilingError if the file
    cannot be read.
    """
    try:
        with open(path, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as exc:
        raise FilingError(path, f"cannot be read: {exc.strerror}") from exc


def is_partial_name(name: str) -> bool:
    """Whether ``name`` is a temporary file of this module, to be ignored."""
    return name.startswith(PARTIAL_PREFIX)


def write_json_atomic(
    path: Path, data: Mapping[str, object], *, mode: int = 0o664
) -> None:
    """Write ``data`` to ``path`` as JSON; readers see the old file or the new.

    The text is UTF-8, indented by two, with non-ASCII kept as is and a
    trailing newline; if a string holds bytes that are not UTF-8 (a file name
    that does not decode), the whole text is ASCII with ``\\u`` escapes
    instead. ``TypeError`` or ``ValueError`` (for NaN) is raised before
    anything is written. The file gets exactly ``mode`` whatever the
    umask. An existing file at ``path`` is replaced: this is for sidecars we
    own, never for an artist's file. Raises FilingError if it cannot be
    written; the old file, if any, is then still whole.
    """
    text = json.dumps(dict(data), indent=2, ensure_ascii=False, allow_nan=False)
    try:
        payload = (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(dict(data), indent=2, allow_nan=False)
        payload = (text + "\n").encode("ascii")
    partial = _partial_path(path)

    try:
        _remove_if_present(partial)
        with open(partial, "xb", opener=_private) as stream:
            stream.write(payload)
            stream.flush()
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        os.replace(partial, path)
        _fsync_directory(path.parent)
    except OSError as exc:
        _remove_quietly(partial)
        raise FilingError(path, f"cannot be written: {exc.strerror}") from exc


def ensure_dir(path: Path, *, mode: int = 0o2775) -> None:
    """Make ``path`` a directory with exactly ``mode``, whatever the umask.

    Missing parents are created with ``mode`` too, and each new entry's parent
    is fsynced. An existing ``path`` is chmodded if its mode differs, so a
    second call repairs a first one that was killed between mkdir and chmod;
    existing parents are left alone (a parent created by such a killed call
    keeps the umask's mode). Raises FilingError if ``path`` is not a directory
    or cannot be created or chmodded.
    """
    try:
        for directory in reversed(_missing_directories(path)):
            try:
                os.mkdir(directory, mode)
            except FileExistsError:
                continue  # created meanwhile by someone else
            _fsync_directory(directory.parent)
            os.chmod(directory, mode)

        if not path.is_dir():
            raise FilingError(path, "exists and is not a directory")
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except OSError as exc:
        raise FilingError(path, f"cannot be made a folder: {exc.strerror}") from exc


def choose_destination(
    directory: Path, name: str, *, sidecar_suffix: str = ".json"
) -> Path:
    """A path in ``directory`` at which the file and its sidecar are both free.

    Tries ``name``, then ``stem (2).ext``, ``stem (3).ext`` and so on, keeping
    the extension, the case and the exact code points of ``name`` (nothing is
    normalised). The sidecar name (file name plus ``sidecar_suffix``) must fit
    in NAME_MAX_BYTES too, so a name that would not leave room for it has its
    stem shortened by whole characters, even when it is free. A missing
    directory counts as empty. The answer is advice only: another process may
    take the name first, which is why :func:`move_file` never overwrites.

    Raises ``ValueError`` if ``name`` is not a plain file name, and FilingError
    if the directory cannot be read or no name fits.
    """
    if name in {"", ".", ".."} or "/" in name or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")

    stem, extension = os.path.splitext(name)
    limit = NAME_MAX_BYTES - len(os.fsencode(sidecar_suffix))
    number = 1
    try:
        while True:
            tail = extension if number == 1 else f" ({number}){extension}"
            candidate = _shorten(stem, tail, limit, directory / name)
            sidecar = directory / (candidate + sidecar_suffix)
            if _lstat(directory / candidate) is None and _lstat(sidecar) is None:
                return directory / candidate
            number += 1
    except OSError as exc:
        raise FilingError(directory, f"cannot be searched: {exc.strerror}") from exc


def move_file(
    source: Path,
    destination: Path,
    *,
    expected_sha256: str | None = None,
    force_copy: bool = False,
) -> Path:
    """Move the regular file ``source`` to ``destination``, which must be free.

    Never overwrites, and the file is at all times at the source, at the
    destination, or (between two steps) at both. Calling it again after a
    crash finishes the job, so it also accepts these states, found on disk:

    - both names are one inode (killed between link and unlink): the source
      name is removed;
    - both exist with the same bytes (killed after a copy): the source is
      removed;
    - the source is gone and the destination exists: already done;
    - both exist and differ: FilingError, and both are kept;
    - neither exists: FilingError (the file is gone; the caller decides).

    Within one filesystem the file is renamed and not read. Across
    filesystems, or when ``force_copy`` is set (for tests), it is copied to a
    partial file beside the destination, checked against the source and
    ``expected_sha256``, renamed into place, and only then is the source
    removed. ``expected_sha256`` is also checked when the source is gone or
    when both hold a copy. A partial file that a killed call left is removed.
    Returns ``destination``; raises FilingError for every problem.
    """
    expected = expected_sha256.lower() if expected_sha256 is not None else None
    try:
        _remove_if_present(_partial_path(destination))
        source_stat = _lstat(source)
        destination_stat = _lstat(destination)

        if source_stat is None:
            _check_already_moved(source, destination, destination_stat, expected)
        elif not stat.S_ISREG(source_stat.st_mode):
            raise FilingError(source, "is not a regular file")
        elif destination_stat is not None:
            _finish_interrupted(source, destination, source_stat, expected)
        elif force_copy or not _rename_within(source, destination):
            _copy_across(source, destination, source_stat, expected)
    except OSError as exc:
        raise FilingError(source, f"cannot be moved: {exc}") from exc

    return destination


def move_entry(source: Path, destination: Path) -> Path:
    """Rename a directory entry that is not a regular file (a symlink, FIFO,
    socket or device node) to ``destination``, never reading or opening it.

    Only within one filesystem (such an entry cannot be copied without
    following it): across filesystems this raises FilingError and the entry
    stays where it is. Never overwrites; a repeat after the entry was moved
    returns at once.
    """
    try:
        if _lstat(source) is None and _lstat(destination) is not None:
            return destination
        if _lstat(destination) is not None:
            raise FilingError(destination, "is taken; the entry was not moved")
        _place(source, destination)
    except FileNotFoundError as exc:
        raise FilingError(source, "is gone") from exc
    except OSError as exc:
        raise FilingError(source, f"cannot be moved: {exc.strerror}") from exc
    return destination


def _check_already_moved(
    source: Path, destination: Path, found: os.stat_result | None, expected: str | None
) -> None:
    if found is None:
        raise FilingError(source, f"is gone, and {destination} does not exist")
    if not stat.S_ISREG(found.st_mode):
        raise FilingError(destination, "exists and is not a regular file")
    if expected is not None and sha256_of(destination) != expected:
        raise FilingError(destination, "is not the expected file (sha256 differs)")


def _finish_interrupted(
    source: Path, destination: Path, source_stat: os.stat_result, expected: str | None
) -> None:
    """Complete a move that was cut short, or refuse if the two files differ."""
    destination_stat = os.lstat(destination)
    if not stat.S_ISREG(destination_stat.st_mode):
        raise FilingError(destination, "exists and is not a regular file")

    if _same_inode(source_stat, destination_stat):
        if _same_entry(source, destination):
            raise FilingError(source, "is the same file as its destination")
        _remove_source(source, source_stat)
        return

    if destination_stat.st_size != source_stat.st_size:
        raise FilingError(destination, f"exists and differs from {source}")
    source_digest = sha256_of(source)
    if sha256_of(destination) != source_digest:
        raise FilingError(destination, f"exists and differs from {source}")
    if expected is not None and source_digest != expected:
        raise FilingError(source, "is not the expected file (sha256 differs)")
    _remove_source(source, source_stat)


def _rename_within(source: Path, destination: Path) -> bool:
    """Rename without replacing; False if the two are on different filesystems."""
    try:
        _place(source, destination)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


def _copy_across(
    source: Path, destination: Path, before: os.stat_result, expected: str | None
) -> None:
    """Copy, verify and place the source, then remove it."""
    partial = _partial_path(destination)
    try:
        copy_stat = _write_verified_copy(source, partial, before, expected)
        _place(partial, destination)
    except BaseException:
        _remove_quietly(partial)
        raise

    if not _same_inode(os.lstat(destination), copy_stat):
        raise FilingError(destination, "was replaced while it was being placed")
    _remove_source(source, before)


def _write_verified_copy(
    source: Path, partial: Path, before: os.stat_result, expected: str | None
) -> os.stat_result:
    """Copy ``source`` to ``partial`` and read the copy back; returns its stat.

    Memory use is one CHUNK_BYTES buffer. Raises FilingError if the source
    changed while it was read (``before`` is its earlier lstat), is not the
    expected file, or if the fsynced copy does not read back the same.
    """
    with (
        open(source, "rb") as reader,
        open(partial, "xb+", opener=_private) as copy,
    ):
        digest = hashlib.sha256()
        view = memoryview(bytearray(CHUNK_BYTES))
        while count := reader.readinto(view):
            digest.update(view[:count])
            copy.write(view[:count])
        copy.flush()

        after = os.fstat(reader.fileno())
        if not _unchanged(before, after) or copy.tell() != before.st_size:
            raise FilingError(source, "changed while it was being copied")
        if expected is not None and digest.hexdigest() != expected:
            raise FilingError(source, "is not the expected file (sha256 differs)")

        os.fchmod(copy.fileno(), stat.S_IMODE(before.st_mode))
        os.utime(copy.fileno(), ns=(before.st_atime_ns, before.st_mtime_ns))
        os.fsync(copy.fileno())
        copy.seek(0)
        if hashlib.file_digest(copy, "sha256").hexdigest() != digest.hexdigest():
            raise FilingError(partial, "does not read back as it was written")
        return os.fstat(copy.fileno())


def _place(old: Path, new: Path) -> None:
    """Rename ``old`` to ``new``; FileExistsError rather than replace ``new``."""
    if not _rename_no_replace(old, new):
        _link_then_unlink(old, new)
        return

    _fsync_directory(new.parent)
    if old.parent != new.parent:
        _fsync_directory(old.parent)


def _link_then_unlink(old: Path, new: Path) -> None:
    """The fallback no-replace rename: a hard link, then removing ``old``."""
    before = os.lstat(old)
    os.link(old, new, follow_symlinks=False)
    _fsync_directory(new.parent)
    _remove_source(old, before)


def _remove_source(source: Path, before: os.stat_result) -> None:
    """Unlink ``source`` if it is still the file seen earlier, and fsync.

    POSIX has no unlink-if-unchanged, so a file written to that name in the
    instant between this check and the unlink would be lost.
    """
    if not _unchanged(before, os.lstat(source)):
        raise FilingError(source, "changed while it was being moved; both kept")
    os.unlink(source)
    _fsync_directory(source.parent)


def _rename_no_replace(old: Path, new: Path) -> bool:
    """Rename unless ``new`` exists; False if this system cannot refuse.

    Raises OSError for other failures: FileExistsError if ``new`` exists,
    EXDEV if the two are on different filesystems.
    """
    native = _native_rename()
    if native is None:
        return False
    if native(os.fsencode(old), os.fsencode(new)) == 0:
        return True

    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(old), None, str(new))


@functools.cache
def _native_rename() -> Callable[[bytes, bytes], int] | None:
    """libc's no-replace rename as ``f(old, new) -> 0 or -1``, if it has one."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        renameat2 = libc.renameat2
        path, number = ctypes.c_char_p, ctypes.c_int
        renameat2.argtypes = [number, path, number, path, ctypes.c_uint]
        renameat2.restype = ctypes.c_int
        return lambda old, new: int(
            renameat2(_AT_FDCWD, old, _AT_FDCWD, new, _RENAME_NOREPLACE)
        )

    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        renamex_np = libc.renamex_np
        renamex_np.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        renamex_np.restype = ctypes.c_int
        return lambda old, new: int(renamex_np(old, new, _RENAME_EXCL))

    return None


def _same_entry(source: Path, destination: Path) -> bool:
    """Whether two names of one inode are one directory entry.

    A case- or normalisation-insensitive filesystem (as on macOS) lets two
    spellings name one entry; removing the "source" would remove the file.
    """
    if not _same_inode(os.stat(source.parent), os.stat(destination.parent)):
        return False
    if os.fsencode(source.name) == os.fsencode(destination.name):
        return True
    names = os.listdir(source.parent)
    return source.name not in names or destination.name not in names


def _shorten(stem: str, tail: str, limit: int, original: Path) -> str:
    """``stem + tail``, cutting characters off the stem to fit ``limit`` bytes."""
    while len(os.fsencode(stem + tail)) > limit:
        stem = stem[:-1]
        if not stem:
            raise FilingError(original, f"cannot be shortened to {limit} bytes")
    return stem + tail


def _missing_directories(path: Path) -> list[Path]:
    """``path`` and those of its ancestors that do not exist, nearest first."""
    missing: list[Path] = []
    while _lstat(path) is None and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _partial_path(path: Path) -> Path:
    key = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:24]
    return path.with_name(PARTIAL_PREFIX + key)


def _private(path: str, flags: int) -> int:
    """An ``open`` opener: new files start readable by their owner only."""
    return os.open(path, flags, 0o600)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some network filesystems cannot fsync a directory. The change it
        # would make durable has already happened; failing would mislead.
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def _remove_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_quietly(path: Path) -> None:
    """Remove a partial file while another error is on its way up."""
    with contextlib.suppress(OSError):  # that error matters more
        os.unlink(path)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _same_inode(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _unchanged(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether ``after`` is the file of ``before`` and not written since."""
    same_size = before.st_size == after.st_size
    same_time = before.st_mtime_ns == after.st_mtime_ns
    return _same_inode(before, after) and same_size and same_time
