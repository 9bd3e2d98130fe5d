"""The uploading step of a batch: each file's bytes to its presigned URL.

:class:`UploadSteps` is the part of :class:`glossi_watch.pipeline.BatchRunner`
that handles the ``uploading`` state; it lives here to keep each module
readable. Files already ``uploaded`` are never sent again; the others are
sent whole from byte 0, read through a descriptor that was checked to be the
same regular file that was settled and hashed. Before the batch moves on to
the confirm, every file is checked once more to be unchanged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from glossi_watch.api import GlossiClient
from glossi_watch.config import FolderConfig, Secret
from glossi_watch.crashpoints import crash_point
from glossi_watch.errors import (
    ExpiredUrlError,
    PermanentUploadError,
    TransientUploadError,
)
from glossi_watch.fileinfo import (
    FileIdentity,
    NotRegularFileError,
    hash_descriptor,
    open_regular,
)
from glossi_watch.names import has_linked_parent
from glossi_watch.sealing import unseal
from glossi_watch.store import Row, StateStore, utc_now

URL_SAFETY_MARGIN_SECONDS = 60.0
DEFAULT_URL_LIFETIME_SECONDS = 3600.0
MAX_REFUSED_UPLOADS = 3
MAX_EXPIRED_URLS = 3
PROGRESS_LOG_SECONDS = 10.0
ASSUMED_BYTES_PER_SECOND = 1_000_000.0


class Abandon(Exception):
    """The current job cannot be finished; start over with a new one.

    ``expired`` marks the cases where the upload URLs ran out of time: the
    batch then also splits (see :meth:`BatchRunner._abandon_job`), since
    uploading all of it again in one job would run out of time again.
    """

    def __init__(self, why: str, *, expired: bool = False) -> None:
        self.expired = expired
        super().__init__(why)


class FailBatch(Exception):
    """Every file of the batch fails with ``reason``; nothing more is tried."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class UploadSteps:
    """The ``uploading`` state's step, mixed into the batch runner."""

    store: StateStore
    client: GlossiClient
    folders: dict[str, FolderConfig]
    api_key: Callable[[], Secret]
    stop: threading.Event
    on_release: Callable[[str, str], None]
    progress: dict[int, float]
    bytes_per_second: float
    log: Any

    def _record(
        self, batch: Row, row: Row, step: str, outcome: str, detail: str
    ) -> None:
        self.store.record_attempt(
            step=step,
            outcome=outcome,
            detail=detail,
            batch_id=batch["id"],
            file_id=row["id"],
        )

    def _upload(self, batch: Row) -> bool:
        expires_at = batch["urls_expire_at"] or 0.0
        folder = self.folders[batch["folder"]]
        key = self.api_key()

        files = self.store.batch_files(batch["id"])
        sent_any = any(row["state"] == "uploaded" for row in files)
        for row in files:
            if row["state"] != "batched":
                continue
            url = unseal(row["upload_seal"] or "", key)
            if url is None:
                raise Abandon("the upload URLs were sealed under another API key")
            if sent_any and not self._time_left_for(row["size"], expires_at):
                raise Abandon(
                    "too little of the upload URLs' life is left", expired=True
                )
            if expires_at <= time.time():
                # Nothing of this job was sent in this run: it waited (a
                # restart, an outage) past its URLs' life. No need to split.
                raise Abandon("the upload URLs expired before the upload began")
            self._upload_one(batch, folder, row, url)
            sent_any = True
            if self.stop.is_set():
                return False

        self._verify_unchanged(folder, batch)
        self.store.update_batch(batch["id"], state="confirming")
        crash_point("confirm_intent_recorded")
        return True

    def _time_left_for(self, size: int, expires_at: float) -> bool:
        """Whether a URL expiring at ``expires_at`` outlives this transfer.

        The expected transfer time is the size at the recent upload speed,
        with half again as margin, plus a minute. (The job's first upload
        always goes: a new job would give its URL no longer a life.)
        """
        needed = 1.5 * size / self.bytes_per_second + URL_SAFETY_MARGIN_SECONDS
        return expires_at - time.time() > needed

    def _upload_one(self, batch: Row, folder: FolderConfig, row: Row, url: str) -> None:
        path = folder.path / row["rel_path"]
        if has_linked_parent(folder, row["rel_path"]):
            self._detach_changed(row, "a folder on its path became a link")
            raise Abandon(f"{row['rel_path']} is no longer inside the folder")
        try:
            fd = open_regular(path)
        except (OSError, NotRegularFileError) as exc:
            if not folder.path.is_dir():
                raise TransientUploadError(
                    f"the folder {folder.path} is not available"
                ) from exc
            if isinstance(exc, PermissionError):
                raise TransientUploadError(f"cannot read {row['rel_path']}") from exc
            self._detach_changed(row, f"cannot open it any more: {exc}")
            raise Abandon(f"{row['rel_path']} changed before its upload") from exc
        try:
            identity = FileIdentity.of(os.fstat(fd))
            if identity != _stored_identity(row):
                self._detach_changed(row, "its size, time or inode changed")
                raise Abandon(f"{row['rel_path']} changed before its upload")
            self._send(batch, row, url, fd, identity.size)
        finally:
            os.close(fd)

    def _send(self, batch: Row, row: Row, url: str, fd: int, size: int) -> None:
        started = time.monotonic()
        progress = _UploadProgress(self, batch["id"], row["rel_path"], size)
        self.log.info("upload_started", file=row["rel_path"], bytes=size)
        try:
            self.client.upload(
                url,
                fd,
                size=size,
                md5_base64=row["md5_base64"],
                on_progress=progress.update,
                should_stop=self.stop.is_set,
            )
        except TransientUploadError as exc:
            if exc.code == "BadDigest" and hash_descriptor(fd)[1] != row["md5_base64"]:
                # The bytes changed in place (same size and mtime): settle again.
                self._detach_changed(row, "its content changed during the upload")
                raise Abandon(f"{row['rel_path']} changed during its upload") from exc
            raise
        except ExpiredUrlError as exc:
            self._record(batch, row, "upload", "expired", str(exc))
            raise Abandon("an upload URL expired", expired=True) from exc
        except PermanentUploadError as exc:
            self._record(batch, row, "upload", "refused", str(exc))
            if self.store.count_attempts(batch["id"], "refused") >= MAX_REFUSED_UPLOADS:
                raise FailBatch("upload_refused", str(exc)) from exc
            raise Abandon("the storage refused an upload") from exc
        crash_point("upload_sent")

        seconds = time.monotonic() - started
        if seconds > 0.5:
            rate = size / seconds
            self.bytes_per_second = 0.7 * self.bytes_per_second + 0.3 * rate
        self.store.update_file(row["id"], state="uploaded", uploaded_at=utc_now())
        self._record(batch, row, "upload", "ok", f"{size} bytes in {seconds:.2f} s")
        self.log.info(
            "upload_finished",
            file=row["rel_path"],
            job_id=batch["job_id"],
            bytes=size,
            seconds=round(seconds, 3),
        )
        crash_point("upload_recorded")

    def _verify_unchanged(self, folder: FolderConfig, batch: Row) -> None:
        """Before the confirm: every uploaded file must still be what was sent."""
        for row in self.store.batch_files(batch["id"]):
            try:
                current = FileIdentity.of((folder.path / row["rel_path"]).lstat())
            except OSError:
                current = None
            if current != _stored_identity(row):
                self._detach_changed(row, "it changed after its upload")
                raise Abandon(f"{row['rel_path']} changed before the confirm")

    def _detach_changed(self, row: Row, why: str) -> None:
        """Take a file that changed out of its batch; it will settle again."""
        self.store.update_file(
            row["id"], state="detected", batch_id=None, model_id=None, upload_seal=None
        )
        self.log.info("file_changed", file=row["rel_path"], detail=why)
        self.on_release(row["folder"], row["rel_path"])


class _UploadProgress:
    """Marks an upload's progress for the health check, and logs long ones."""

    def __init__(self, runner: UploadSteps, batch_id: int, name: str, size: int):
        self.runner = runner
        self.batch_id = batch_id
        self.name = name
        self.size = size
        self.started = time.monotonic()
        self.next_log = self.started + PROGRESS_LOG_SECONDS
        self.halfway = False

    def update(self, sent: int) -> None:
        now = time.monotonic()
        self.runner.progress[self.batch_id] = now
        if not self.halfway and sent * 2 >= self.size:
            self.halfway = True
            crash_point("upload_midway")
        if now >= self.next_log:
            self.next_log = now + PROGRESS_LOG_SECONDS
            elapsed = max(now - self.started, 1e-6)
            self.runner.log.info(
                "upload_progress",
                file=self.name,
                bytes=sent,
                total_bytes=self.size,
                percent=round(100 * sent / self.size, 1),
                megabytes_per_second=round(sent / elapsed / 1e6, 2),
            )


def _stored_identity(row: Row) -> FileIdentity:
    return FileIdentity(row["device"], row["inode"], row["size"], row["mtime_ns"])


def earliest_expiry(urls: Iterable[str]) -> tuple[float, float]:
    """When the first of ``urls`` expires and its lifetime, from SigV4 fields."""
    earliest = time.time() + DEFAULT_URL_LIFETIME_SECONDS
    shortest = DEFAULT_URL_LIFETIME_SECONDS
    for url in urls:
        query = parse_qs(urlsplit(url).query)
        try:
            signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
            lifetime = float(query["X-Amz-Expires"][0])
        except (KeyError, ValueError, IndexError):
            continue
        expiry = signed.replace(tzinfo=UTC).timestamp() + lifetime
        earliest = min(earliest, expiry)
        shortest = min(shortest, lifetime)
    return earliest, shortest
