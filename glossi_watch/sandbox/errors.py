"""The sandbox's branch of the glossi-watch exception tree.

::

    GlossiWatchError
    ├── SandboxStartError      a server could not listen, or no data folder
    ├── InvalidFault           a fault description that cannot be used
    └── SandboxRefusal         a request is answered with an error status
        ├── ApiRefusal         rendered as the API's JSON error body
        └── StorageRefusal     rendered as S3's XML <Error> body

A refusal never leaves the sandbox: the request dispatch catches it and turns
it into the HTTP response that the real service would send. An invalid fault
becomes a 400 on ``POST /_sandbox/faults`` and a usage error on the command
line.
"""

from __future__ import annotations

import json
import uuid
from xml.sax.saxutils import escape

from glossi_watch.errors import GlossiWatchError


class SandboxStartError(GlossiWatchError):
    """The sandbox cannot start: an address is taken or bad, or no data folder.

    ``subject`` is the ``host:port`` or the folder the problem is about.
    """

    def __init__(self, subject: str, problem: str) -> None:
        self.subject = subject
        self.problem = problem
        super().__init__(f"The sandbox cannot start: {subject}: {problem}")


class InvalidFault(GlossiWatchError):
    """A fault description that cannot be used; the message says what would be."""


class SandboxRefusal(GlossiWatchError):
    """A request that the sandbox answers with an error status.

    ``close_connection`` is true when the request body was left unread (or the
    client stopped sending it), so the connection cannot carry another request.
    ``headers`` are sent with the error, e.g. ``Allow`` or ``Retry-After``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        close_connection: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.close_connection = close_connection
        self.headers = dict(headers or {})
        super().__init__(f"{status} {code}: {message}")

    def render(self) -> tuple[bytes, str, dict[str, str]]:
        """Return the response body, its Content-Type and any extra headers."""
        raise NotImplementedError


class ApiRefusal(SandboxRefusal):
    """An API error, sent as ``{"error": <code>, "message": <sentence>}``."""

    def render(self) -> tuple[bytes, str, dict[str, str]]:
        body = json.dumps({"error": self.code, "message": self.message}).encode()
        return body, "application/json", self.headers


class StorageRefusal(SandboxRefusal):
    """An S3 error, sent as S3's XML ``<Error>`` document with a request id."""

    def render(self) -> tuple[bytes, str, dict[str, str]]:
        request_id = uuid.uuid4().hex[:16].upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(self.code)}</Code>"
            f"<Message>{escape(self.message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = {**self.headers, "x-amz-request-id": request_id}
        return body, "application/xml", headers
