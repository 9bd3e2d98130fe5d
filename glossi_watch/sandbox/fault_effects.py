"""What each request fault does to a request, on its real connection.

:func:`apply_fault` runs in the request's handler thread, after routing and
before the route. A ``status`` fault raises the refusal that the dispatch
sends; ``latency`` and ``bandwidth`` let the route run afterwards; ``html``,
``reset`` and ``stall`` deal with the request themselves, so the route never
runs and an upload stores nothing. Every wait ends early when ``wake`` is set
(the sandbox is closing).
"""

from __future__ import annotations

import email.utils
import io
import math
import re
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

from glossi_watch.sandbox.errors import ApiRefusal, SandboxRefusal, StorageRefusal

if TYPE_CHECKING:
    from glossi_watch.sandbox.fault_specs import FaultSpec
    from glossi_watch.sandbox.server import SandboxHandler

PREFIX_PIECE_BYTES = 64 * 1024
THROTTLE_SLICES_PER_SECOND = 20
MAX_SLICE_BYTES = 64 * 1024

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Service Temporarily Unavailable</title>"
    b"</head>\n<body><h1>We'll be right back</h1>\n<p>This site is down for "
    b"maintenance. Please try again later.</p></body></html>\n"
)
S3_ERRORS = {
    403: ("AccessDenied", "Access Denied"),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    501: (
        "NotImplemented",
        "A header you provided implies functionality that is not implemented",
    ),
    503: ("SlowDown", "Please reduce your request rate."),
}


def apply_fault(
    spec: FaultSpec, server: str, handler: SandboxHandler, wake: threading.Event
) -> bool:
    """Make the handler's request suffer ``spec``; True when the route must not run.

    Only upload bodies are read before a reset or a stall (``after_bytes`` of
    them at most); API requests are reset or stalled before their body is read.
    """
    if spec.kind == "status":
        raise _status_refusal(spec, server)
    if spec.kind == "latency":
        wake.wait(spec.seconds or 0.0)
        return False
    if spec.kind == "bandwidth":
        rate = spec.bytes_per_second or 1
        handler.rfile = ThrottledReader(handler.rfile, rate, wake)
        return False
    if spec.kind == "html":
        content_type = "text/html; charset=utf-8"
        handler.send_before_body(200, HTML_PAGE, content_type=content_type)
        return True

    if server == "storage":
        _read_prefix(handler, spec.after_bytes)
    if spec.kind == "reset":
        handler.abort_connection()
    else:
        wake.wait(spec.seconds or 0.0)
        handler.close_connection = True
    return True


def _status_refusal(spec: FaultSpec, server: str) -> SandboxRefusal:
    """The error answer of a ``status`` fault, in the shape of ``server``."""
    status = spec.status or 503
    headers: dict[str, str] = {}
    if spec.retry_after is not None:
        headers["Retry-After"] = spec.retry_after
    elif spec.retry_after_date_seconds is not None:
        when = math.ceil(time.time() + spec.retry_after_date_seconds)
        headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)

    try:
        words = re.findall(r"[A-Za-z]+", HTTPStatus(status).phrase)
    except ValueError:
        words = ["Simulated", "Error"]
    if server == "storage":
        default = ("".join(words), f"The service answered {status}. Please try again.")
        code, message = S3_ERRORS.get(status, default)
        return StorageRefusal(status, code, message, headers=headers)
    code = "_".join(word.lower() for word in words)
    message = f"The service answered {status} ({' '.join(words)}); try again later."
    return ApiRefusal(status, code, message, headers=headers)


def _read_prefix(handler: SandboxHandler, after_bytes: int) -> None:
    """Read up to ``after_bytes`` of the body, fewer when it ends or fails first."""
    declared = handler.body_remaining
    wanted = after_bytes if declared is None else min(after_bytes, declared)
    if wanted <= 0:
        return

    handler.send_continue()
    try:
        while wanted > 0:
            piece = handler.rfile.read(min(wanted, PREFIX_PIECE_BYTES))
            if not piece:
                return
            wanted -= len(piece)
    except OSError:
        return


class ThrottledReader(io.BufferedIOBase):
    """Reads ``source`` at no more than ``bytes_per_second`` on average.

    ``read(n)`` returns n bytes unless the source ends first, as a buffered
    file does. It reads in slices of a twentieth of a second's allowance (at
    most 64 KiB), sleeping before each slice until the bytes read so far are
    within the rate, so the first slice comes at once. A wait interrupted by
    ``wake`` raises :class:`ConnectionAbortedError`. Closing it leaves
    ``source`` open.
    """

    def __init__(
        self, source: io.BufferedIOBase, bytes_per_second: int, wake: threading.Event
    ) -> None:
        super().__init__()
        self._source = source
        self._bytes_per_second = bytes_per_second
        self._slice_bytes = min(
            MAX_SLICE_BYTES, max(1, bytes_per_second // THROTTLE_SLICES_PER_SECOND)
        )
        self._wake = wake
        self._started = time.monotonic()
        self._consumed = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        wanted = math.inf if size is None or size < 0 else size
        pieces: list[bytes] = []
        got = 0
        while got < wanted:
            self._wait_for_allowance()
            piece = self._source.read(int(min(wanted - got, self._slice_bytes)))
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
            self._consumed += len(piece)
        return b"".join(pieces)

    def _wait_for_allowance(self) -> None:
        due = self._started + self._consumed / self._bytes_per_second
        delay = due - time.monotonic()
        if delay > 0 and self._wake.wait(delay):
            raise ConnectionAbortedError("the sandbox is closing")
