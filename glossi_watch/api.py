"""The Glossi Jobs API client, and the uploader for presigned URLs.

Two httpx clients, on purpose: the API client carries ``X-API-Key`` and talks
only to the configured base URL; the upload client carries no credentials at
all, follows no redirects, and talks to whatever storage host the API named.
So the key can never reach a storage host, whatever URL the API returns.

Every httpx error and every non-2xx answer is translated here, once, into the
project's error tree (:mod:`glossi_watch.errors`). Answers are read leniently:
unknown fields are ignored and unknown statuses are passed through for the
caller to treat as "still running" (the API is labelled beta).
"""

from __future__ import annotations

import email.utils
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from glossi_watch.config import ApiConfig, FolderConfig, Secret
from glossi_watch.errors import (
    ApiError,
    AuthError,
    ExpiredUrlError,
    PermanentApiError,
    PermanentUploadError,
    TransientApiError,
    TransientUploadError,
)
from glossi_watch.retry import TRANSIENT_S3_CODES, is_transient_status

GLB_CONTENT_TYPE = "model/gltf-binary"
TERMINAL_STATUSES = frozenset({"COMPLETE", "FAILED"})
USER_AGENT = "glossi-watch/0.1"
_BODY_KEEP_CHARS = 2000
# Uploads are sent in small pieces because the write timeout applies to each
# piece: it then measures a lack of progress. A 64 KiB piece must move within
# read_timeout_seconds, so the slowest link kept alive is 64 KiB per timeout
# (about 1 kB/s at the default 60 s).
UPLOAD_PIECE_BYTES = 64 * 1024
UNSENT_LOW_WATER_BYTES = 128 * 1024


@dataclass(frozen=True)
class CreatedModel:
    model_id: str
    file_name: str
    upload_url: str = field(repr=False)
    upload_key: str = ""


@dataclass(frozen=True)
class CreatedJob:
    job_id: str
    status: str
    models: tuple[CreatedModel, ...]


@dataclass(frozen=True)
class ModelResult:
    model_id: str
    model_name: str
    project_id: str | None
    project_name: str | None


@dataclass(frozen=True)
class JobState:
    """One answer of ``GET /jobs/{id}``, with the parts we act on pulled out."""

    job_id: str
    status: str
    error: str | None
    progress: Mapping[str, Any]
    results: tuple[ModelResult, ...]
    batch_project_id: str | None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


def job_request_body(folder: FolderConfig, file_names: list[str]) -> dict[str, Any]:
    """The ``POST /jobs`` body for ``file_names`` under ``folder``'s settings."""
    body: dict[str, Any] = {
        "models": [{"fileName": name, "fileType": "glb"} for name in file_names],
        "createProjects": folder.create_projects,
    }
    if folder.template_id:
        body["templateId"] = folder.template_id
    if folder.render_settings:
        body["renderSettings"] = dict(folder.render_settings)
    if folder.webhook_url:
        body["webhookUrl"] = folder.webhook_url
    return body


class GlossiClient:
    """Calls to the Glossi Jobs API with one key; thread-safe (httpx is)."""

    def __init__(self, config: ApiConfig, api_key: Secret) -> None:
        self.base_url = config.base_url
        timeout = httpx.Timeout(
            config.read_timeout_seconds, connect=config.connect_timeout_seconds
        )
        self._api = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        self._api_key = api_key
        # Uploads: no default headers, and a write timeout that measures a
        # lack of progress (each send of a piece), never the whole transfer.
        self._uploads = httpx.Client(
            timeout=httpx.Timeout(
                config.read_timeout_seconds, connect=config.connect_timeout_seconds
            ),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            transport=httpx.HTTPTransport(socket_options=_upload_socket_options()),
        )

    def close(self) -> None:
        self._api.close()
        self._uploads.close()

    def set_api_key(self, api_key: Secret) -> None:
        self._api_key = api_key

    # -- API calls -----------------------------------------------------------

    def create_job(self, body: Mapping[str, Any]) -> CreatedJob:
        answer = self._call("POST", "/jobs", json=body)
        models = []
        for item in _list(answer.get("models")):
            url = item.get("uploadUrl")
            if not isinstance(url, str) or not isinstance(item.get("id"), str):
                raise PermanentApiError(
                    "the created job lists a model without id or uploadUrl"
                )
            models.append(
                CreatedModel(
                    model_id=item["id"],
                    file_name=str(item.get("fileName", "")),
                    upload_url=url,
                    upload_key=str(item.get("uploadKey", "")),
                )
            )
        job_id = answer.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            raise PermanentApiError("the API created a job but sent no jobId")
        return CreatedJob(job_id, str(answer.get("status", "")), tuple(models))

    def confirm_uploads(self, job_id: str) -> str:
        answer = self._call("POST", f"/jobs/{job_id}/confirm-uploads")
        return str(answer.get("status", ""))

    def get_job(self, job_id: str) -> JobState:
        answer = self._call("GET", f"/jobs/{job_id}")
        results = []
        for item in _list(answer.get("results")):
            model = _mapping(item.get("model"))
            project = _mapping(item.get("project"))
            results.append(
                ModelResult(
                    model_id=str(model.get("id", "")),
                    model_name=str(model.get("name", "")),
                    project_id=_text_or_none(project.get("id")),
                    project_name=_text_or_none(project.get("name")),
                )
            )
        error = answer.get("error")
        return JobState(
            job_id=str(answer.get("jobId", job_id)),
            status=str(answer.get("status", "UNKNOWN")),
            error=None if error is None else _describe_error(error),
            progress=_mapping(answer.get("progress")),
            results=tuple(results),
            batch_project_id=_text_or_none(
                _mapping(answer.get("batchProject")).get("id")
            ),
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"X-API-Key": self._api_key.reveal()}
        try:
            response = self._api.request(
                method, self.base_url + path, headers=headers, **kwargs
            )
        except httpx.ConnectError as exc:
            raise TransientApiError(
                f"{method} {path}: cannot connect: {exc}", maybe_processed=False
            ) from exc
        except httpx.TimeoutException as exc:
            raise TransientApiError(f"{method} {path} timed out") from exc
        except httpx.TransportError as exc:
            raise TransientApiError(f"{method} {path} failed: {exc}") from exc

        body = response.text[:_BODY_KEEP_CHARS]
        status = response.status_code
        if 200 <= status < 300:
            try:
                answer = response.json()
            except ValueError as exc:
                raise TransientApiError(
                    f"{method} {path} answered {status} with a body that is not JSON",
                    status_code=status,
                    body=body,
                ) from exc
            if not isinstance(answer, dict):
                raise TransientApiError(
                    f"{method} {path} answered {status} with JSON but not an object",
                    status_code=status,
                    body=body,
                )
            return answer
        raise _api_error(method, path, response, body)

    # -- uploads -------------------------------------------------------------

    def upload(
        self,
        url: str,
        fd: int,
        *,
        size: int,
        md5_base64: str,
        on_progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """PUT ``size`` bytes read from ``fd`` (from offset 0) to ``url``.

        Streams in pieces with an exact ``Content-Length`` (never chunked),
        the GLB content type and ``Content-MD5``, and no credentials. Only a
        2xx answer counts as success.
        """
        headers = {
            "Content-Type": GLB_CONTENT_TYPE,
            "Content-Length": str(size),
            "Content-MD5": md5_base64,
        }
        body = _read_pieces(fd, size, on_progress, should_stop)
        try:
            response = self._uploads.put(url, content=body, headers=headers)
        except UploadStopped:
            raise
        except httpx.TimeoutException as exc:
            raise TransientUploadError("the upload stalled and timed out") from exc
        except httpx.TransportError as exc:
            raise TransientUploadError(f"the upload connection failed: {exc}") from exc
        if 200 <= response.status_code < 300:
            return
        raise _upload_error(response)


def _upload_socket_options() -> list[tuple[int, int, int]]:
    """Keep little unsent data queued in the kernel during uploads.

    Without this, the kernel accepts megabytes of a body at once; the last
    write then returns long before the bytes are on the wire, and the wait
    for the answer times out on a slow link although data is still moving.
    With a low-water mark on unsent data, each write waits for real
    progress, so the write timeout measures it, and throughput is unchanged
    (bytes in flight are not limited, only bytes not yet sent).
    """
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is None:
        return []
    return [(socket.IPPROTO_TCP, option, UNSENT_LOW_WATER_BYTES)]


class UploadStopped(Exception):
    """The daemon is shutting down; the upload was abandoned midway."""


def _read_pieces(
    fd: int,
    size: int,
    on_progress: Callable[[int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Iterator[bytes]:
    offset = 0
    while offset < size:
        if should_stop is not None and should_stop():
            raise UploadStopped()
        piece = os.pread(fd, min(UPLOAD_PIECE_BYTES, size - offset), offset)
        if not piece:
            raise TransientUploadError(
                f"the file shrank during the upload (read {offset} of {size} bytes)"
            )
        offset += len(piece)
        yield piece
        if on_progress is not None:
            on_progress(offset)


def _api_error(method: str, path: str, response: httpx.Response, body: str) -> ApiError:
    status = response.status_code
    message = f"{method} {path} answered {status}: {_summarise(body)}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status in (401, 403):
        return AuthError(message, status_code=status, body=body)
    if is_transient_status(status):
        return TransientApiError(
            message,
            status_code=status,
            body=body,
            retry_after=retry_after,
            maybe_processed=status != 429,
        )
    return PermanentApiError(message, status_code=status, body=body)


_S3_CODE = re.compile(r"<Code>([^<]*)</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def _upload_error(response: httpx.Response) -> Exception:
    status = response.status_code
    text = response.text[:_BODY_KEEP_CHARS]
    code_match = _S3_CODE.search(text)
    code = code_match.group(1) if code_match else ""
    message_match = _S3_MESSAGE.search(text)
    detail = message_match.group(1) if message_match else _summarise(text)
    message = f"storage answered {status} {code}: {detail}".strip()

    if status == 403 and "expired" in detail.lower():
        return ExpiredUrlError(message, status_code=status, code=code)
    if code in TRANSIENT_S3_CODES or is_transient_status(status):
        return TransientUploadError(message, status_code=status, code=code)
    return PermanentUploadError(message, status_code=status, code=code)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _summarise(body: str) -> str:
    flat = " ".join(body.split())
    return flat[:300] if flat else "(empty body)"


def _describe_error(error: Any) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for key in ("message", "error", "code"):
            if isinstance(error.get(key), str):
                return str(error[key])
    return str(error)


def _list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
