"""Jobs of the sandbox: the create-job request, the job record, its progress.

A job waits in ``AWAITING_UPLOADS`` until it is confirmed. From then on its
status is computed from the time since the confirm, one stage per
``step_seconds``: ``PROCESSING``, ``CREATING_PROJECTS`` (when projects are
created), ``RENDERING`` (when rendering was asked for), ``COMPLETE``. Models
are inspected when the job is confirmed; if one is not a valid GLB the stage
after ``PROCESSING`` is ``FAILED`` with an ``error`` naming the file. A fault
can force the ending at the confirm (:class:`ForcedEnding`): ``FAILED`` with
its error after ``PROCESSING``, or ``PROCESSING`` forever. No thread drives
the progression, so a job costs nothing while nobody looks at it.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from urllib.parse import quote

from glossi_watch.glb import inspect_glb_path
from glossi_watch.sandbox.errors import ApiRefusal
from glossi_watch.sandbox.job_requests import JobRequest
from glossi_watch.sandbox.storage import BUCKET, ObjectStore

JsonObject = dict[str, object]


class Status(StrEnum):
    """The statuses of the Jobs API."""

    AWAITING_UPLOADS = "AWAITING_UPLOADS"
    PROCESSING = "PROCESSING"
    CREATING_PROJECTS = "CREATING_PROJECTS"
    RENDERING = "RENDERING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


@dataclass(frozen=True)
class ForcedEnding:
    """How a fault makes a confirmed job end: FAILED with ``error``, or never.

    With ``error`` None the job stays ``PROCESSING`` with nothing ready.
    """

    error: str | None


@dataclass(frozen=True)
class ModelSlot:
    """One model of a job, with the object key and URL path it is uploaded to."""

    id: str
    file_name: str
    upload_key: str
    upload_path: str
    project_id: str

    @property
    def project_name(self) -> str:
        return f"{self.file_name.rsplit('.', 1)[0].title()} Project"


@dataclass
class Job:
    """A job record; mutated only under the lock of its :class:`JobBook`."""

    id: str
    models: tuple[ModelSlot, ...]
    request: JobRequest
    batch_project: JsonObject | None
    confirmed_at: float | None = None
    confirm_count: int = 0
    failure: str | None = None
    valid_models: int = 0
    hangs: bool = False


class JobBook:
    """All jobs of one sandbox, safe to use from several threads.

    ``step_seconds`` is how long each stage after the confirm lasts (0 makes a
    confirmed job reach its final status at once); ``clock`` is monotonic.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        step_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._step_seconds = step_seconds
        self._clock = clock
        self._workspace_id = str(uuid.uuid4())
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def create(self, request: JobRequest) -> Job:
        """Record a new job awaiting the uploads of its models."""
        job_id = str(uuid.uuid4())
        prefix = f"workspaces/{self._workspace_id}/jobs/{job_id}"
        models = tuple(
            _model_slot(prefix, str(uuid.uuid4()), file_name)
            for file_name in request.file_names
        )
        batch_project: JsonObject | None = None
        if len(models) > 1:
            title = f"API Job - {date.today().isoformat()}"
            batch_project = {"id": str(uuid.uuid4()), "title": title}

        job = Job(job_id, models, request, batch_project)
        with self._lock:
            self._jobs[job_id] = job
        return job

    def confirm(
        self,
        job_id: str,
        *,
        forced: Callable[[], ForcedEnding | None] = lambda: None,
    ) -> Job:
        """Accept the confirm of a job whose files are all uploaded, or refuse it.

        The uploaded objects are inspected here, so a re-upload after the
        confirm does not change the outcome. ``forced`` is called once the
        confirm is accepted (under the book's lock); the ending it returns
        overrides the inspection's.
        """
        with self._lock:
            job = self._find(job_id)
            if job.confirmed_at is not None:
                raise ApiRefusal(
                    409,
                    "already_confirmed",
                    f"Job {job_id} is already confirmed; poll it for its status.",
                )
            missing = [
                slot.file_name
                for slot in job.models
                if not self._store.get(slot.upload_key)
            ]
            if missing:
                raise ApiRefusal(
                    400,
                    "uploads_incomplete",
                    "Upload every file before confirming; not uploaded yet: "
                    + ", ".join(repr(name) for name in missing)
                    + ".",
                )

            job.failure, job.valid_models = self._inspect(job)
            ending = forced()
            if ending is not None:
                job.failure = ending.error
                job.hangs = ending.error is None
            job.confirmed_at = self._clock()
            job.confirm_count += 1
            return job

    def describe(self, job_id: str) -> JsonObject:
        """Return the ``GET /jobs/{jobId}`` answer for the job as of now."""
        with self._lock:
            job = self._find(job_id)
            status, fraction, stages = self._position(job)
            uploaded = sum(1 for slot in job.models if self._store.get(slot.upload_key))

            view: JsonObject = {
                "jobId": job.id,
                "status": status.value,
                "progress": _progress(job, status, fraction, stages, uploaded),
            }
            if job.batch_project is not None:
                view["batchProject"] = dict(job.batch_project)
            if status is Status.COMPLETE:
                view["results"] = [_result(job, slot) for slot in job.models]
            if status is Status.FAILED:
                view["error"] = job.failure
            return view

    def inspect(self) -> list[JsonObject]:
        """Return every job with its status, its error when FAILED, and its objects.

        This is the answer of ``GET /_sandbox/jobs``.
        """
        with self._lock:
            return [self._inspect_job(job) for job in self._jobs.values()]

    def _find(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiRefusal(404, "job_not_found", f"There is no job {job_id!r}.")
        return job

    def _inspect(self, job: Job) -> tuple[str | None, int]:
        """Return the first model's failure (or None) and how many models are valid."""
        failure: str | None = None
        valid = 0
        for slot in job.models:
            problem = self._problem_with(slot)
            if not problem:
                valid += 1
            elif failure is None:
                failure = f"Model '{slot.file_name}' could not be processed: {problem}"
        return failure, valid

    def _problem_with(self, slot: ModelSlot) -> str:
        """Return why the uploaded model is not a usable GLB, or "" when it is."""
        stored = self._store.get(slot.upload_key)
        if stored is None:
            return "The file was not uploaded."
        try:
            check = inspect_glb_path(stored.path, check_json=True)
        except OSError as exc:
            return f"The uploaded file could not be read ({exc.strerror})."
        return "" if check.ok else check.message

    def _position(self, job: Job) -> tuple[Status, float, tuple[Status, ...]]:
        """Return the current status, how far into it (0..1) and the stage list."""
        if job.confirmed_at is None:
            return Status.AWAITING_UPLOADS, 0.0, ()
        if job.hangs:
            return Status.PROCESSING, 0.0, (Status.PROCESSING,)

        stages = _stages(job)
        last = len(stages) - 1
        elapsed = self._clock() - job.confirmed_at
        steps = elapsed / self._step_seconds if self._step_seconds > 0 else math.inf
        if steps >= last:
            return stages[last], 1.0, stages

        index = int(steps)
        return stages[index], steps - index, stages

    def _inspect_job(self, job: Job) -> JsonObject:
        status = self._position(job)[0]
        return {
            "jobId": job.id,
            "status": status.value,
            "error": job.failure if status is Status.FAILED else None,
            "confirmCount": job.confirm_count,
            "models": [self._inspect_model(slot) for slot in job.models],
        }

    def _inspect_model(self, slot: ModelSlot) -> JsonObject:
        stored = self._store.get(slot.upload_key)
        return {
            "id": slot.id,
            "fileName": slot.file_name,
            "size": stored.size if stored else None,
            "sha256": stored.sha256_hex if stored else None,
        }


def _model_slot(prefix: str, model_id: str, file_name: str) -> ModelSlot:
    key = f"{prefix}/{model_id}/{file_name}"
    path = f"/{BUCKET}/{prefix}/{model_id}/{quote(file_name, safe='')}"
    return ModelSlot(model_id, file_name, key, path, str(uuid.uuid4()))


def _stages(job: Job) -> tuple[Status, ...]:
    if job.failure is not None:
        return (Status.PROCESSING, Status.FAILED)

    stages = [Status.PROCESSING]
    if job.request.create_projects:
        stages.append(Status.CREATING_PROJECTS)
    if job.request.render:
        stages.append(Status.RENDERING)
    return (*stages, Status.COMPLETE)


def _progress(
    job: Job,
    status: Status,
    fraction: float,
    stages: tuple[Status, ...],
    uploaded: int,
) -> JsonObject:
    """Count what is done: nothing before a stage, a share during it, all after."""

    def done(stage: Status, total: int) -> int:
        if stage not in stages or status not in stages:
            return 0
        if stages.index(status) > stages.index(stage):
            return total
        return math.floor(fraction * total) if status is stage else 0

    models_total = len(job.models)
    projects_total = models_total if job.request.create_projects else 0
    renders_total = models_total if job.request.render else 0
    ready = (
        job.valid_models
        if status is Status.FAILED
        else done(Status.PROCESSING, models_total)
    )
    return {
        "modelsUploaded": uploaded,
        "modelsReady": ready,
        "modelsTotal": models_total,
        "projectsCreated": done(Status.CREATING_PROJECTS, projects_total),
        "projectsTotal": projects_total,
        "rendersComplete": done(Status.RENDERING, renders_total),
        "rendersTotal": renders_total,
    }


def _result(job: Job, slot: ModelSlot) -> JsonObject:
    project: JsonObject | None = None
    if job.request.create_projects:
        project = {"id": slot.project_id, "name": slot.project_name}
    return {"model": {"id": slot.id, "name": slot.file_name}, "project": project}
