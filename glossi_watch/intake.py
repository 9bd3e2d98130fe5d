"""From a path in a hot folder to a file that is whole, checked and ready.

:class:`Intake` is fed paths (from watch events and from scans) and decides,
for each candidate (:mod:`glossi_watch.names`), one of: keep watching it
(still being written), reject it (it can never be uploaded; a reason code
says why), or declare it ready. Every decision is written to the store
before it counts.

A file is ready when all of these hold: its size and mtime have not changed
for ``settle_seconds`` (a file whose size is final but whose mtime still
moves is still being written); no process on this machine has it open for
writing (a Linux read lease says so; writers on other machines of a share
cannot be seen, which is what the settle time is for); its GLB header
declares exactly its size and its chunks add up; and it could be opened and
hashed without changing under us. A file that is still incomplete after
``incomplete_after_seconds`` is rejected with reason ``incomplete``.

Settling is timed with the monotonic clock in memory; after a restart a file
simply settles again, which costs one settle period and nothing else.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable
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
from glossi_watch.names import (
    has_linked_parent,
    relative_candidate,
    walk_candidates,
)
from glossi_watch.store import Row, StateStore, utc_now

UNREADABLE_RETRY_SECONDS = (5.0, 30.0, 120.0, 300.0)


@dataclass
class _Watch:
    file_id: int
    identity: FileIdentity
    stable_since: float
    first_seen: float
    retry_at: float = 0.0
    failures: int = 0


class Intake:
    """Settles and checks the candidate files of one hot folder."""

    def __init__(
        self,
        folder: FolderConfig,
        store: StateStore,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.folder = folder
        self.store = store
        self.heartbeat = heartbeat
        self.log = get_logger(folder=folder.name)
        self._watching: dict[str, _Watch] = {}
        self._reported: set[str] = set()

    def scan(self) -> list[Path]:
        """Every candidate path in the folder ([] if it cannot be read)."""
        try:
            return list(walk_candidates(self.folder))
        except OSError as exc:
            self._report_once("", "folder_unreadable", exc.strerror or str(exc))
            return []

    def observe(self, path: Path) -> None:
        """Note that ``path`` exists or changed; start or restart its settling."""
        rel_path = relative_candidate(path, self.folder)
        if rel_path is None or not self._storable(rel_path):
            return
        if has_linked_parent(self.folder, rel_path):
            self._report_once(rel_path, "file_outside_folder", "a parent is a link")
            self._forget(rel_path)
            return
        try:
            status = lstat_regular(path)
        except FileNotFoundError:
            self._forget(rel_path)
            return
        except NotRegularFileError as exc:
            self._reject(rel_path, None, "not_regular_file", str(exc))
            return
        except OSError as exc:
            self._report_once(rel_path, "file_unreadable", exc.strerror or str(exc))
            return

        identity = FileIdentity.of(status)
        watch = self._watching.get(rel_path)
        if watch is not None:
            if watch.identity != identity:
                watch.identity, watch.stable_since = identity, time.monotonic()
            return
        file_id = self._claim(rel_path, identity)
        if file_id is not None:
            now = time.monotonic()
            self._watching[rel_path] = _Watch(file_id, identity, now, now)

    def _claim(self, rel_path: str, identity: FileIdentity) -> int | None:
        """The row to settle ``rel_path`` under, or None if intake is done with it."""
        row = self.store.active_file(self.folder.name, rel_path)
        if row is None:
            file_id = self.store.add_file(self.folder.name, rel_path, state="detected")
            self.log.info("file_detected", file=rel_path, bytes=identity.size)
            crash_point("file_detected")
            return file_id
        if row["state"] == "detected":
            return int(row["id"])
        if row["state"] == "ready" and _stored_identity(row) != identity:
            self.store.update_file(row["id"], state="detected")
            self.log.info("file_changed", file=rel_path, bytes=identity.size)
            return int(row["id"])
        return None  # Ready, batched or rejected: its next steps are elsewhere.

    def settle(self) -> None:
        """Check every watched file whose size and mtime have held long enough."""
        now = time.monotonic()
        for rel_path, watch in list(self._watching.items()):
            settled = now - watch.stable_since >= self.folder.settle_seconds
            if settled and now >= watch.retry_at:
                self._check(rel_path, watch, now)
            elif not settled:
                self._give_up_if_overdue(rel_path, watch, now, "it keeps changing")

    def _check(self, rel_path: str, watch: _Watch, now: float) -> None:
        try:
            fd = open_regular(self.folder.path / rel_path)
        except FileNotFoundError:
            self._forget(rel_path)
            return
        except NotRegularFileError as exc:
            self._reject(rel_path, watch.file_id, "not_regular_file", str(exc))
            return
        except OSError as exc:
            self._postpone(rel_path, watch, now, exc)
            return
        try:
            self._check_open(rel_path, watch, fd, now)
        except OSError as exc:
            self._postpone(rel_path, watch, now, exc)
        finally:
            os.close(fd)

    def _check_open(self, rel_path: str, watch: _Watch, fd: int, now: float) -> None:
        identity = FileIdentity.of(os.fstat(fd))
        if identity != watch.identity:
            watch.identity, watch.stable_since = identity, now
            return
        if _open_for_writing_elsewhere(fd):
            watch.retry_at = now + self.folder.settle_seconds
            self._give_up_if_overdue(rel_path, watch, now, "it is still open")
            return
        if identity.size > self.folder.max_file_bytes:
            problem = (
                f"The file has {identity.size} bytes; the limit is "
                f"{self.folder.max_file_bytes}."
            )
            self._reject(rel_path, watch.file_id, "too_large", problem, identity)
            return

        with os.fdopen(os.dup(fd), "rb") as stream:
            check = inspect_glb(stream, identity.size)
        if check.verdict == "invalid":
            self._reject(rel_path, watch.file_id, check.reason, check.message, identity)
            return
        if check.verdict == "incomplete":
            watch.retry_at = now + self.folder.settle_seconds
            self._give_up_if_overdue(rel_path, watch, now, check.message)
            return

        sha256, md5_base64 = hash_descriptor(fd, self.heartbeat)
        if FileIdentity.of(os.fstat(fd)) != identity:
            watch.stable_since = now  # It changed while we read it.
            return
        self._mark_ready(rel_path, watch, identity, sha256, md5_base64)

    def _mark_ready(
        self,
        rel_path: str,
        watch: _Watch,
        identity: FileIdentity,
        sha256: str,
        md5_base64: str,
    ) -> None:
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
        self._reported.discard(rel_path)
        self.log.info("file_ready", file=rel_path, bytes=identity.size, sha256=sha256)
        crash_point("file_ready")

    def _give_up_if_overdue(
        self, rel_path: str, watch: _Watch, now: float, detail: str
    ) -> bool:
        if now - watch.first_seen < self.folder.incomplete_after_seconds:
            return False
        limit = self.folder.incomplete_after_seconds
        message = f"The file was not complete after {limit:.0f} s: {detail}"
        self._reject(rel_path, watch.file_id, "incomplete", message, watch.identity)
        return True

    def _postpone(self, rel_path: str, watch: _Watch, now: float, exc: OSError) -> None:
        """A file we cannot read now: say so once, and look again later."""
        delays = UNREADABLE_RETRY_SECONDS
        watch.retry_at = now + delays[min(watch.failures, len(delays) - 1)]
        watch.failures += 1
        self._report_once(rel_path, "file_unreadable", exc.strerror or str(exc))

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
                file_id = int(row["id"])
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
        if not self.folder.path.is_dir():
            return  # The share dropped: nothing vanished, we just cannot see it.
        watch = self._watching.pop(rel_path, None)
        row = self.store.active_file(self.folder.name, rel_path)
        if row is not None and row["state"] in ("detected", "ready"):
            self.store.update_file(row["id"], state="gone")
            self.log.info("file_vanished", file=rel_path)
        elif watch is not None:
            self.log.info("file_vanished", file=rel_path)

    def _storable(self, rel_path: str) -> bool:
        """Names that are not valid UTF-8 cannot be stored, sent or described."""
        try:
            rel_path.encode("utf-8")
        except UnicodeEncodeError:
            shown = rel_path.encode("utf-8", "backslashreplace").decode()
            self._report_once(
                shown, "file_name_unusable", "not valid UTF-8; rename the file"
            )
            return False
        return True

    def _report_once(self, rel_path: str, event: str, detail: str) -> None:
        key = f"{event}:{rel_path}"
        if key not in self._reported:
            self._reported.add(key)
            self.log.warning(event, file=rel_path, error=detail)


def _open_for_writing_elsewhere(fd: int) -> bool:
    """Whether another process here has the file open for writing (Linux).

    A read lease is granted only when nobody has the file open for writing.
    Where leases are not available (other systems, a file we do not own and
    no CAP_LEASE, network file systems) this answers False and the settle
    time alone decides.
    """
    set_lease = getattr(fcntl, "F_SETLEASE", None)
    if set_lease is None:
        return False
    try:
        fcntl.fcntl(fd, set_lease, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EBUSY)
    fcntl.fcntl(fd, set_lease, fcntl.F_UNLCK)
    return False


def _stored_identity(row: Row) -> FileIdentity:
    return FileIdentity(row["device"], row["inode"], row["size"], row["mtime_ns"])
