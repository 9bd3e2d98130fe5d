"""The sandbox's record of the requests it received, for ``GET /_sandbox/requests``.

A record keeps the method, the path, the header names, whether an API key was
sent, the status answered and the fault that fired: never a header value and
never a query string, so no API key and no signed URL is ever kept.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass


@dataclass
class RequestRecord:
    """What the sandbox remembers of one request: never a value, never a query.

    ``status`` is the status answered (None while the request is handled, or
    when it was reset or stalled); ``fault`` is the kind of the fault that
    fired on it, if one did. Changed only through its :class:`RequestLog`.
    """

    method: str
    path: str
    headers: tuple[str, ...]
    had_api_key: bool
    server: str
    status: int | None = None
    fault: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": list(self.headers),
            "hadApiKey": self.had_api_key,
            "server": self.server,
            "status": self.status,
            "fault": self.fault,
        }


class RequestLog:
    """The latest ``limit`` requests to both servers, oldest first; thread-safe."""

    def __init__(self, limit: int = 10_000) -> None:
        self._records: collections.deque[RequestRecord] = collections.deque(
            maxlen=limit
        )
        self._lock = threading.Lock()

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def note_status(self, record: RequestRecord, status: int) -> None:
        with self._lock:
            record.status = status

    def note_fault(self, record: RequestRecord, kind: str) -> None:
        with self._lock:
            record.fault = kind

    def as_json(self) -> list[dict[str, object]]:
        """Every record as JSON, as of now."""
        with self._lock:
            return [record.as_json() for record in self._records]
