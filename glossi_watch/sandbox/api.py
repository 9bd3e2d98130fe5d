"""The Jobs API server of the sandbox, and its inspection routes.

``/api/v1/*`` needs the ``X-API-Key`` header (401 otherwise, before any 404,
405 or look at the body); ``/_sandbox/*`` is open, for tests and people to look
inside and to switch faults (see :mod:`glossi_watch.sandbox.fault_specs`):

- ``GET /_sandbox/faults``: ``{"faults": [...]}``, each with its ``id`` and
  how many times it ``fired``;
- ``POST /_sandbox/faults`` with a fault as a JSON object: 201 and the fault
  with its ``id``, or 400 ``invalid_fault`` saying what is wrong;
- ``DELETE /_sandbox/faults``: removes them all, ``{"cleared": <count>}``;
- ``DELETE /_sandbox/faults/{id}``: removes one and returns it (404
  ``fault_not_found`` when there is no such fault).

Every error is ``{"error": <code>, "message": <sentence>}``. Request bodies
are read whole, so they are limited to ``MAX_BODY_BYTES``.
"""

from __future__ import annotations

import hmac
import json
import re

from glossi_watch.sandbox.errors import ApiRefusal, InvalidFault
from glossi_watch.sandbox.fault_specs import FaultSpec, parse_fault
from glossi_watch.sandbox.job_requests import parse_job_request
from glossi_watch.sandbox.jobs import JsonObject, ModelSlot, Status
from glossi_watch.sandbox.routes import UNMATCHED, Route, RouteMatch, Target
from glossi_watch.sandbox.server import SandboxHandler

API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 1024 * 1024

CREATE_JOB = "create_job"
CONFIRM_UPLOADS = "confirm_uploads"
GET_JOB = "get_job"
INSPECT_JOBS = "inspect_jobs"
INSPECT_REQUESTS = "inspect_requests"
LIST_FAULTS = "list_faults"
ADD_FAULT = "add_fault"
CLEAR_FAULTS = "clear_faults"
REMOVE_FAULT = "remove_fault"

ROUTES = (
    Route(CREATE_JOB, "POST", re.compile(f"{API_PREFIX}/jobs")),
    Route(
        CONFIRM_UPLOADS,
        "POST",
        re.compile(f"{API_PREFIX}/jobs/(?P<job_id>[^/]+)/confirm-uploads"),
    ),
    Route(GET_JOB, "GET", re.compile(f"{API_PREFIX}/jobs/(?P<job_id>[^/]+)")),
    Route(INSPECT_JOBS, "GET", re.compile("/_sandbox/jobs")),
    Route(INSPECT_REQUESTS, "GET", re.compile("/_sandbox/requests")),
    Route(LIST_FAULTS, "GET", re.compile("/_sandbox/faults")),
    Route(ADD_FAULT, "POST", re.compile("/_sandbox/faults")),
    Route(CLEAR_FAULTS, "DELETE", re.compile("/_sandbox/faults")),
    Route(REMOVE_FAULT, "DELETE", re.compile("/_sandbox/faults/(?P<fault_id>[^/]+)")),
)


class ApiHandler(SandboxHandler):
    """Answers the Jobs API, and the ``/_sandbox`` inspection and fault routes."""

    role = "api"
    routes = ROUTES
    software = "glossi-sandbox"
    drain_limit = MAX_BODY_BYTES

    def answer(self, found: RouteMatch, target: Target) -> None:
        is_api = target.path == API_PREFIX or target.path.startswith(API_PREFIX + "/")
        if is_api:
            self._check_api_key()
        if found.name == UNMATCHED:
            raise _unmatched(found)
        # Read on every route, so that no body is left on a kept-alive connection.
        body = self._read_body()

        state = self.server.state
        job_id = found.params.get("job_id", "")
        name = found.name
        if name == CREATE_JOB:
            self._create_job(body)
        elif name == CONFIRM_UPLOADS:
            self._confirm_uploads(job_id)
        elif name == GET_JOB:
            self._send_json(200, state.jobs.describe(job_id))
        elif name == INSPECT_JOBS:
            self._send_json(200, {"jobs": state.jobs.inspect()})
        elif name == INSPECT_REQUESTS:
            self._send_json(200, {"requests": state.requests.as_json()})
        elif name == LIST_FAULTS:
            self._send_json(200, {"faults": state.faults.as_json()})
        elif name == ADD_FAULT:
            self._send_json(201, state.faults.add(_fault_from_body(body)))
        elif name == CLEAR_FAULTS:
            self._send_json(200, {"cleared": state.faults.clear()})
        elif name == REMOVE_FAULT:
            self._remove_fault(found.params["fault_id"])

    def _create_job(self, body: bytes) -> None:
        state = self.server.state
        job = state.jobs.create(parse_job_request(body))
        ttl_seconds = state.faults.claim_url_ttl(self)
        models = [
            {
                "id": slot.id,
                "fileName": slot.file_name,
                "uploadUrl": self._upload_url(slot, ttl_seconds),
                "uploadKey": slot.upload_key,
            }
            for slot in job.models
        ]
        created: JsonObject = {
            "jobId": job.id,
            "status": Status.AWAITING_UPLOADS.value,
            "models": models,
        }
        self._send_json(201, created)

    def _confirm_uploads(self, job_id: str) -> None:
        state = self.server.state
        job = state.jobs.confirm(
            job_id, forced=lambda: state.faults.claim_job_ending(self)
        )
        confirmed: JsonObject = {
            "jobId": job.id,
            "status": Status.PROCESSING.value,
            "modelsConfirmed": len(job.models),
        }
        self._send_json(200, confirmed)

    def _remove_fault(self, fault_id: str) -> None:
        removed = self.server.state.faults.remove(fault_id)
        if removed is None:
            raise ApiRefusal(
                404, "fault_not_found", f"There is no fault {fault_id!r} to remove."
            )
        self._send_json(200, removed)

    def _upload_url(self, slot: ModelSlot, ttl_seconds: float | None) -> str:
        state = self.server.state
        query = state.presigner.presign_put(
            slot.upload_path, host=state.storage_host, ttl_seconds=ttl_seconds
        )
        return f"http://{state.storage_host}{slot.upload_path}?{query}"

    def _check_api_key(self) -> None:
        given = self.headers.get("X-API-Key")
        if given is None:
            raise ApiRefusal(
                401, "unauthorized", "The X-API-Key header is missing; send your key."
            )
        expected = self.server.state.api_key
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiRefusal(401, "unauthorized", "The X-API-Key is not a valid key.")

    def _read_body(self) -> bytes:
        """Read the whole request body; chunked or oversized bodies are refused."""
        length = self.body_remaining
        if "Transfer-Encoding" in self.headers:
            raise ApiRefusal(
                411,
                "length_required",
                "Send the body with a Content-Length header, not chunked.",
                close_connection=True,
            )
        if length is None:
            raise ApiRefusal(
                400,
                "invalid_content_length",
                "The Content-Length header is not a number of bytes.",
                close_connection=True,
            )
        if length > MAX_BODY_BYTES:
            raise ApiRefusal(
                413,
                "body_too_large",
                f"The request body may be at most {MAX_BODY_BYTES} bytes.",
                close_connection=True,
            )

        self.send_continue()
        try:
            body = self.rfile.read(length) if length else b""
        except OSError:
            body = b""
        if len(body) < length:
            raise ApiRefusal(
                400,
                "incomplete_body",
                "The body ended before its Content-Length.",
                close_connection=True,
            )
        self.body_remaining = 0
        return body

    def _send_json(self, status: int, document: JsonObject) -> None:
        body = json.dumps(document).encode()
        self.send_body(status, body, content_type="application/json")


def _fault_from_body(body: bytes) -> FaultSpec:
    """Check the fault a ``POST /_sandbox/faults`` describes, or refuse it with 400."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        document = None
    if not isinstance(document, dict):
        raise ApiRefusal(
            400,
            "invalid_fault",
            'The body must be a JSON object such as {"kind": "status", '
            '"route": "upload", "status": 503, "count": 2}.',
        )
    try:
        return parse_fault(document)
    except InvalidFault as exc:
        raise ApiRefusal(400, "invalid_fault", str(exc)) from exc


def _unmatched(found: RouteMatch) -> ApiRefusal:
    if found.allowed_methods:
        allowed = ", ".join(found.allowed_methods)
        return ApiRefusal(
            405,
            "method_not_allowed",
            f"This path only answers {allowed}.",
            headers={"Allow": allowed},
        )
    return ApiRefusal(404, "not_found", "There is no such route in the Jobs API.")
