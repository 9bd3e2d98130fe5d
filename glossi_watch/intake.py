"""From a path in a hot folder to a file that is whole, checked and ready.

:class:`Intake` is fed paths (from watch events and from scans) and decides,
for each, one of: ignore it (not a candidate name), keep watching it (still
being written), reject it (it can never be uploaded; a reason code says why),
or declare it ready (whole GLB, size and mtime unchanged for the settle time,
hashed). Every decision is written to the state store before it counts.

Settling is timed with the monotonic clock in memory; after a restart a file
simply settles again, which costs one settle period and nothing else.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass
from pathlib import Path

from glossi_watch.config import FolderConfig
from glossi_watch.crashpoints import crash_point
from glossi_watch.fileinfo import (
    FileIdentity,
    NotRegularFileError,
    hash_descriptor,
    lstat_regular,
    open_regular,
)
from glossi_watch.glb import inspect_glb
from glossi_watch.logs import get_logger
from glossi_watch.store import StateStore, utc_now

# Names that editors, copy tools and operating systems leave behind while
# they write, or beside what they write; never uploaded, never moved.
IGNORED_PATTERNS = (
    "._*",
    ".*",
    "~$*",
    "*.part",
    "*.partial",
    "*.filepart",
    "*.crdownload",
    "*.tmp",
    "*.download",
)
INCOMPLETE_LIMIT_SECONDS = 3600.0


def is_candidate(name: str) -> bool:
    """Whether a file called ``name`` may be an artist's model to upload."""
    if not name.lower().endswith(".glb"):
        return False
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_PATTERNS)


@dataclass
class _Watch:
    file_id: int
    identity: FileIdentity
    stable_since: float
    first_seen: float


class Intake:
    """Settles and checks the candidate files of one hot folder."""

    def __init__(self, folder: FolderConfig, store: StateStore) -> None:
        self.folder = folder
        self.store = store
        self.log = get_logger(folder=folder.name)
        self._watching: dict[str, _Watch] = {}

    def scan(self) -> list[Path]:
        """Every candidate path directly inside the folder."""
        try:
            entries = list(os.scandir(self.folder.path))
        except OSError as exc:
            self.log.warning("folder_unreadable", error=exc.strerror)
            return []
        return [Path(entry.path) for entry in entries if is_candidate(entry.name)]

    def observe(self, path: Path) -> None:
        """Note that ``path`` exists or changed; start or restart its settling."""
        if path.parent != self.folder.path or not is_candidate(path.name):
            return
        rel_path = path.name
        try:
            status = lstat_regular(path)
        except FileNotFoundError:
            self._forget(rel_path)
            return
        except NotRegularFileError as exc:
            self._reject(rel_path, None, "not_regular_file", str(exc))
            return
        except OSError as exc:
            self.log.warning("file_unreadable", file=rel_path, error=exc.strerror)
            return

        identity = FileIdentity.of(status)
        watch = self._watching.get(rel_path)
        if watch is not None:
            if watch.identity != identity:
                watch.identity = identity
                watch.stable_since = time.monotonic()
            return

        row = self.store.active_file(self.folder.name, rel_path)
        if row is None:
            file_id = self.store.add_file(self.folder.name, rel_path, state="detected")
            self.log.info("file_detected", file=rel_path, bytes=identity.size)
            crash_point("file_detected")
        elif row["state"] == "detected":
            file_id = row["id"]
        elif row["state"] == "ready" and _stored_identity(row) != identity:
            # Changed after it was declared ready: it must settle again.
            file_id = row["id"]
            self.store.update_file(file_id, state="detected")
            self.log.info("file_changed", file=rel_path, bytes=identity.size)
        else:
            return  # Already ready, batched or rejected: intake is done with it.
        now = time.monotonic()
        self._watching[rel_path] = _Watch(file_id, identity, now, now)

    def settle(self) -> None:
        """Check every watched file whose size and mtime have held long enough."""
        now = time.monotonic()
        for rel_path, watch in list(self._watching.items()):
            if now - watch.stable_since >= self.folder.settle_seconds:
                self._check(rel_path, watch, now)

    def _check(self, rel_path: str, watch: _Watch, now: float) -> None:
        path = self.folder.path / rel_path
        try:
            fd = open_regular(path)
        except FileNotFoundError:
            self._forget(rel_path)
            return
        except NotRegularFileError as exc:
            self._reject(rel_path, watch.file_id, "not_regular_file", str(exc))
            return
        except OSError as exc:
            self.log.warning("file_unreadable", file=rel_path, error=exc.strerror)
            watch.stable_since = now
            return
        try:
            self._check_open(rel_path, watch, fd, now)
        finally:
            os.close(fd)

    def _check_open(self, rel_path: str, watch: _Watch, fd: int, now: float) -> None:
        identity = FileIdentity.of(os.fstat(fd))
        if identity != watch.identity:
            watch.identity, watch.stable_since = identity, now
            return
        if identity.size > self.folder.max_file_bytes:
            self._reject(
                rel_path,
                watch.file_id,
                "too_large",
                f"The file has {identity.size} bytes; the limit is "
                f"{self.folder.max_file_bytes}.",
                identity,
            )
            return

        with os.fdopen(os.dup(fd), "rb") as stream:
            check = inspect_glb(stream, identity.size)
        if check.verdict == "invalid":
            self._reject(rel_path, watch.file_id, check.reason, check.message, identity)
            return
        if check.verdict == "incomplete":
            if now - watch.first_seen >= INCOMPLETE_LIMIT_SECONDS:
                self._reject(
                    rel_path, watch.file_id, "incomplete", check.message, identity
                )
            return

        sha256, md5_base64 = hash_descriptor(fd)
        if FileIdentity.of(os.fstat(fd)) != identity:
            watch.stable_since = now  # It changed while we read it.
            return
        self.store.update_file(
            watch.file_id,
            state="ready",
            size=identity.size,
            mtime_ns=identity.mtime_ns,
            device=identity.device,
            inode=identity.inode,
            sha256=sha256,
            md5_base64=md5_base64,
            ready_at=utc_now(),
            previous_file_id=self.store.earlier_failure(
                self.folder.name, sha256=sha256, identity=identity
            ),
        )
        del self._watching[rel_path]
        self.log.info("file_ready", file=rel_path, bytes=identity.size, sha256=sha256)
        crash_point("file_ready")

    def _reject(
        self,
        rel_path: str,
        file_id: int | None,
        reason: str,
        message: str,
        identity: FileIdentity | None = None,
    ) -> None:
        self._watching.pop(rel_path, None)
        if file_id is None:
            row = self.store.active_file(self.folder.name, rel_path)
            if row is not None and row["state"] != "detected":
                return
            if row is None:
                file_id = self.store.add_file(
                    self.folder.name, rel_path, state="detected"
                )
            else:
                file_id = row["id"]
        known: dict[str, object] = {}
        if identity is not None:
            known = {
                "size": identity.size,
                "mtime_ns": identity.mtime_ns,
                "device": identity.device,
                "inode": identity.inode,
                "previous_file_id": self.store.earlier_failure(
                    self.folder.name, identity=identity
                ),
            }
        self.store.update_file(
            file_id,
            state="rejected",
            outcome="failed",
            reason=reason,
            message=message,
            **known,
        )
        self.log.warning("file_rejected", file=rel_path, reason=reason, message=message)

    def _forget(self, rel_path: str) -> None:
        watch = self._watching.pop(rel_path, None)
        row = self.store.active_file(self.folder.name, rel_path)
        if row is not None and row["state"] == "detected":
            self.store.update_file(row["id"], state="gone")
            self.log.info("file_vanished", file=rel_path)
        elif watch is not None:
            self.log.info("file_vanished", file=rel_path)


def _stored_identity(row: dict[str, object]) -> FileIdentity:
    return FileIdentity(
        int(row["device"] or 0),  # type: ignore[call-overload]
        int(row["inode"] or 0),  # type: ignore[call-overload]
        int(row["size"] or 0),  # type: ignore[call-overload]
        int(row["mtime_ns"] or 0),  # type: ignore[call-overload]
    )
