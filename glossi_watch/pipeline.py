"""The batch state machine: from grouped files to a finished Glossi job.

A batch moves through these states; each arrow is one commit to the store,
and the side effect named on it happens between the two commits::

    pending ──POST /jobs──▶ uploading ──PUT each file──▶ confirming
       ▲  (via "creating":                                   │
       │   intent first)                          POST confirm-uploads
       │                                                     ▼
    (job abandoned: URLs expired,           processing ──GET /jobs/{id}──▶ finished
     key changed, a file changed)            (polled until COMPLETE/FAILED)     │
                                                                   move + sidecar
                                                                               ▼
                                                                             filed

Files follow along: ``batched`` → ``uploaded`` (per PUT) → ``moving`` →
``filed``. Resuming after a crash is running :meth:`BatchRunner.advance` on
every batch that is not ``filed``; each state's step is written so that
running it again after a crash anywhere inside it is safe:

- ``creating``: a POST may have reached the API without its answer being
  committed. The Jobs API has no idempotency key, so that job may exist as an
  orphan; it is recorded as ``orphan_possible`` and a new job is requested.
  The orphan is never confirmed: only a job id that was committed can be.
- ``uploading``: files already ``uploaded`` are not sent again; the others
  are sent from byte 0 (a PUT to the same URL replaces the object).
- ``confirming``: the job is read first; if it already left
  ``AWAITING_UPLOADS`` the earlier confirm arrived and is not repeated.
- ``finished``: filing is resumable on its own (:mod:`glossi_watch.filer`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath

from glossi_watch import retry
from glossi_watch.api import (
    CreatedModel,
    GlossiClient,
    JobState,
    UploadStopped,
    job_request_body,
)
from glossi_watch.config import ApiConfig, FolderConfig, Secret
from glossi_watch.crashpoints import crash_point
from glossi_watch.errors import (
    ApiError,
    AuthError,
    FilingError,
    PermanentApiError,
    TransientApiError,
    UploadError,
)
from glossi_watch.filer import Filer
from glossi_watch.logs import get_logger
from glossi_watch.sealing import seal
from glossi_watch.store import Row, StateStore, dumps, utc_now
from glossi_watch.uploading import (
    ASSUMED_BYTES_PER_SECOND,
    MAX_EXPIRED_URLS,
    Abandon,
    FailBatch,
    UploadSteps,
    earliest_expiry,
)


class BatchRunner(UploadSteps):
    """Drives batches through the state machine above; one batch per call."""

    def __init__(
        self,
        *,
        store: StateStore,
        client: GlossiClient,
        filer: Filer,
        folders: dict[str, FolderConfig],
        api: ApiConfig,
        api_key: Callable[[], Secret],
        stop: threading.Event,
        on_release: Callable[[str, str], None] = lambda folder, rel_path: None,
        on_key_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.client = client
        self.filer = filer
        self.folders = folders
        self.api = api
        self.api_key = api_key
        self.stop = stop
        self.on_release = on_release
        self.on_key_refused = on_key_refused
        # Batch id → monotonic time of its last sign of progress, while a
        # worker drives it; the daemon's health check reads it.
        self.progress: dict[int, float] = {}
        # Recent upload speed, for judging whether a URL lives long enough.
        self.bytes_per_second = ASSUMED_BYTES_PER_SECOND
        self.log = get_logger()
        self._steps: dict[str, Callable[[Row], bool]] = {
            "pending": self._create_job,
            "creating": self._recover_creating,
            "uploading": self._upload,
            "confirming": self._confirm,
            "processing": self._poll,
            "finished": self._file_all,
        }

    def advance(self, batch_id: int) -> None:
        """Take the batch as far as it can go now; wait states return early."""
        self.progress[batch_id] = time.monotonic()
        try:
            self._advance(batch_id)
        finally:
            self.progress.pop(batch_id, None)

    def _advance(self, batch_id: int) -> None:
        while not self.stop.is_set():
            self.progress[batch_id] = time.monotonic()
            batch = self.store.batch(batch_id)
            step = self._steps.get(batch["state"])
            if step is None:
                return
            try:
                if not step(batch):
                    return
            except (TransientApiError, AuthError, UploadError) as exc:
                self._retry_later(batch, exc)
                return
            except (FilingError, OSError) as exc:
                # The folder went away or refuses us; the files stay put.
                self._retry_later(batch, exc)
                return
            except Abandon as exc:
                try:
                    self._abandon_job(batch, str(exc), split=exc.expired)
                except FailBatch as failure:
                    self._fail_batch(batch, failure.reason, str(failure))
            except FailBatch as exc:
                self._fail_batch(batch, exc.reason, str(exc))
            except UploadStopped:
                return

    # -- pending / creating --------------------------------------------------

    def _create_job(self, batch: Row) -> bool:
        files = self.store.batch_files(batch["id"])
        if not files:
            self.store.update_batch(batch["id"], state="filed")
            return False
        folder = self.folders[batch["folder"]]
        names = [PurePosixPath(row["rel_path"]).name for row in files]
        body = job_request_body(folder, names)

        with self.store.transaction():
            record = self.store.add_job_record(batch["id"], "requested")
            self.store.update_batch(batch["id"], state="creating")
        crash_point("job_intent_recorded")
        try:
            created = self.client.create_job(body)
        except PermanentApiError as exc:
            self.store.update_job_record(record, state="refused", note=str(exc))
            raise FailBatch("api_rejected", str(exc)) from exc
        except ApiError as exc:
            # A request that may have reached the API may have made a job.
            state = "orphan_possible" if exc.maybe_processed else "not_created"
            with self.store.transaction():
                self.store.update_job_record(record, state=state, note=str(exc))
                self.store.update_batch(batch["id"], state="pending")
            raise
        crash_point("job_request_sent")

        pairs = _pair_models(files, created.models)
        if pairs is None:
            self.store.update_job_record(
                record, state="abandoned", job_id=created.job_id
            )
            listed = [model.file_name for model in created.models]
            raise FailBatch(
                "api_rejected",
                f"job {created.job_id} lists models {listed} that do not match "
                f"the {len(files)} files asked for",
            )
        key = self.api_key()
        expires_at, lifetime = earliest_expiry(m.upload_url for m in created.models)
        with self.store.transaction():
            self.store.update_job_record(record, state="created", job_id=created.job_id)
            for row, model in pairs:
                self.store.update_file(
                    row["id"],
                    model_id=model.model_id,
                    upload_seal=seal(model.upload_url, key),
                )
            self.store.update_batch(
                batch["id"],
                state="uploading",
                job_id=created.job_id,
                job_status=created.status,
                urls_expire_at=expires_at,
                urls_lifetime_seconds=lifetime,
            )
        self.log.info(
            "job_created", job_id=created.job_id, batch=batch["id"], files=len(files)
        )
        crash_point("job_created")
        return True

    def _recover_creating(self, batch: Row) -> bool:
        for record in self.store.job_records(batch["id"]):
            if record["state"] == "requested":
                self.store.update_job_record(
                    record["id"],
                    state="orphan_possible",
                    note="a job request was in flight when the daemon stopped",
                )
                self.log.warning("job_orphan_possible", batch=batch["id"])
        self.store.update_batch(batch["id"], state="pending")
        return True

    # -- confirming and processing -------------------------------------------

    def _confirm(self, batch: Row) -> bool:
        job_id = batch["job_id"]
        try:
            current = self.client.get_job(job_id)
        except PermanentApiError as exc:
            raise Abandon(f"the API no longer knows job {job_id}: {exc}") from exc
        if current.status == "AWAITING_UPLOADS":
            try:
                self.client.confirm_uploads(job_id)
            except PermanentApiError as exc:
                if exc.status_code != 409:
                    raise Abandon(f"the API refused to confirm: {exc}") from exc
            crash_point("confirm_sent")
        with self.store.transaction():
            for record in self.store.job_records(batch["id"]):
                if record["job_id"] == job_id:
                    self.store.update_job_record(record["id"], state="confirmed")
            self.store.update_batch(
                batch["id"],
                state="processing",
                confirmed_at=utc_now(),
                retry_count=0,
                next_step_at=time.time() + self.api.poll_interval_seconds,
            )
        self.log.info("job_confirmed", job_id=job_id, batch=batch["id"])
        crash_point("job_confirmed")
        return True

    def _poll(self, batch: Row) -> bool:
        if (batch["next_step_at"] or 0) > time.time():
            return False
        try:
            state = self.client.get_job(batch["job_id"])
        except PermanentApiError as exc:
            raise FailBatch("job_lost", str(exc)) from exc
        polls = (batch["poll_count"] or 0) + 1
        folder = self.folders[batch["folder"]]
        # Only an answer that still says "not finished" can time a job out:
        # an outage, or the daemon being down, never fails a finished job.
        overdue = _seconds_since(batch["confirmed_at"]) > folder.job_timeout_seconds
        if not state.finished and overdue:
            raise FailBatch(
                "job_timeout",
                f"Job {batch['job_id']} did not finish within "
                f"{folder.job_timeout_seconds:.0f} s (status {state.status}).",
            )
        if not state.finished:
            interval = min(
                self.api.poll_interval_seconds * 1.5 ** min(polls, 20),
                self.api.max_poll_interval_seconds,
            )
            self.store.update_batch(
                batch["id"],
                job_status=state.status,
                poll_count=polls,
                next_step_at=time.time() + interval,
            )
            self.log.debug(
                "job_progress",
                job_id=state.job_id,
                status=state.status,
                progress=dict(state.progress),
            )
            return False
        crash_point("job_finished_seen")
        self._record_finished(batch, state)
        crash_point("job_finished_recorded")
        return True

    def _record_finished(self, batch: Row, state: JobState) -> None:
        results = [
            {
                "model_id": result.model_id,
                "model_name": result.model_name,
                "project_id": result.project_id,
                "project_name": result.project_name,
            }
            for result in state.results
        ]
        complete = state.status == "COMPLETE"
        with self.store.transaction():
            self.store.update_batch(
                batch["id"],
                state="finished",
                job_status=state.status,
                job_error=state.error,
                batch_project_id=state.batch_project_id,
                result_json=dumps(results),
                finished_at=utc_now(),
            )
            for row in self.store.batch_files(batch["id"]):
                self.store.update_file(
                    row["id"],
                    outcome="done" if complete else "failed",
                    reason=None if complete else "job_failed",
                    message=None if complete else (state.error or "The job failed."),
                )
        created = datetime.fromisoformat(batch["created_at"].replace("Z", "+00:00"))
        self.log.info(
            "job_finished",
            job_id=state.job_id,
            status=state.status,
            error=state.error,
            files=len(self.store.batch_files(batch["id"])),
            batch_project_id=state.batch_project_id,
            seconds=round((datetime.now(UTC) - created).total_seconds(), 1),
        )

    # -- finished ------------------------------------------------------------

    def _file_all(self, batch: Row) -> bool:
        for row in self.store.batch_files(batch["id"]):
            if row["state"] == "filed" or row["state"] == "gone":
                continue
            self.filer.file(
                row,
                outcome=row["outcome"] or "failed",
                reason=row["reason"],
                message=row["message"],
                batch=batch,
            )
        self.store.update_batch(batch["id"], state="filed")
        return False

    # -- giving up on a job, or on the batch ---------------------------------

    def _abandon_job(self, batch: Row, why: str, *, split: bool = False) -> None:
        """Give up the batch's job; its files wait for a new one.

        With ``split`` (the URLs ran out of time), the files not yet uploaded
        move to a batch of their own, so each part needs less time than the
        whole did: the uploaded ones fitted in one URL lifetime and will
        again. A lone file that outlives its URL three times fails with
        reason ``upload_too_slow``.
        """
        files = self.store.batch_files(batch["id"])
        waiting = [row["id"] for row in files if row["state"] == "batched"]
        uploaded = [row["id"] for row in files if row["state"] == "uploaded"]
        moved: list[int] = []
        if split and uploaded and waiting:
            moved = waiting
        elif split and len(waiting) > 1:
            moved = waiting[1:]
        elif (
            split
            and self.store.count_attempts(batch["id"], "expired") + 1
            >= MAX_EXPIRED_URLS
        ):
            raise FailBatch(
                "upload_too_slow",
                "The upload could not finish before its upload URL expired, "
                f"{MAX_EXPIRED_URLS} times; the link is too slow for this file.",
            )

        with self.store.transaction():
            for record in self.store.job_records(batch["id"]):
                if record["job_id"] == batch["job_id"] and batch["job_id"]:
                    self.store.update_job_record(
                        record["id"], state="abandoned", note=why
                    )
            for row in files:
                if row["state"] in ("batched", "uploaded"):
                    self.store.update_file(
                        row["id"], state="batched", model_id=None, upload_seal=None
                    )
            self.store.update_batch(
                batch["id"],
                state="pending",
                job_id=None,
                job_status=None,
                urls_expire_at=None,
            )
            if moved:
                self.store.create_batch(batch["folder"], moved)
        self.store.record_attempt(
            step="job",
            outcome="expired" if split else "abandoned",
            detail=why,
            batch_id=batch["id"],
        )
        self.log.warning(
            "job_abandoned", job_id=batch["job_id"], reason=why, split_off=len(moved)
        )

    def _fail_batch(self, batch: Row, reason: str, message: str) -> None:
        with self.store.transaction():
            for row in self.store.batch_files(batch["id"]):
                self.store.update_file(
                    row["id"], outcome="failed", reason=reason, message=message
                )
            self.store.update_batch(
                batch["id"], state="finished", finished_at=utc_now()
            )
        self.log.error(
            "batch_failed", batch=batch["id"], reason=reason, message=message
        )

    def _retry_later(self, batch: Row, exc: Exception) -> None:
        count = (batch["retry_count"] or 0) + 1
        retry_after = getattr(exc, "retry_after", None)
        delay = retry.backoff_seconds(count - 1, retry_after=retry_after)
        self.store.update_batch(
            batch["id"], retry_count=count, next_step_at=time.time() + delay
        )
        self.store.record_attempt(
            step=batch["state"], outcome="retry", detail=str(exc), batch_id=batch["id"]
        )
        if isinstance(exc, AuthError):
            self.on_key_refused()
        event = "api_key_refused" if isinstance(exc, AuthError) else "step_retry"
        self.log.warning(
            event,
            batch=batch["id"],
            state=batch["state"],
            error=str(exc),
            retry_in_seconds=round(delay, 1),
            attempt=count,
        )


def _pair_models(
    files: list[Row], models: tuple[CreatedModel, ...]
) -> list[tuple[Row, CreatedModel]] | None:
    """Each file with the model the API created for it, or None if unclear.

    Models are matched by ``fileName``; the order of the answer is used only
    when names repeat (the same name from two subfolders) or are missing.
    """
    names = [PurePosixPath(row["rel_path"]).name for row in files]
    returned = [model.file_name for model in models]
    if len(returned) != len(names):
        return None
    if returned == names or not any(returned):
        return list(zip(files, models, strict=True))
    if sorted(returned) != sorted(names) or len(set(names)) != len(names):
        return None
    by_name = {model.file_name: model for model in models}
    return [(row, by_name[name]) for row, name in zip(files, names, strict=True)]


def _seconds_since(timestamp: str | None) -> float:
    if not timestamp:
        return 0.0
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (datetime.now(UTC) - moment).total_seconds()
