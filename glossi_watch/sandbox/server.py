"""The HTTP plumbing that the sandbox's two servers share.

Every request on either server goes through :meth:`SandboxHandler.dispatch`,
the one place where it is recorded, matched to a route, offered to the
:class:`FaultHook`, and answered; a :class:`SandboxRefusal` raised on the way
becomes the error response. Every response carries ``Content-Length``. A
refused request whose body was not read has that body drained, so the
connection can carry the next request, or, when that is not possible, the
connection is closed after the response with a short lingering read so that
the client still receives the answer.

Nothing here prints or records a header value or a query string: the request
log keeps the method, the path, and header names only. Methods other than
GET, HEAD, POST, PUT, DELETE, PATCH and OPTIONS get http.server's own 501
and are not logged.
"""

from __future__ import annotations

import collections
import contextlib
import re
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, NamedTuple, Protocol

from glossi_watch.sandbox.errors import SandboxRefusal
from glossi_watch.sandbox.jobs import JobBook
from glossi_watch.sandbox.storage import ObjectStore, Presigner

UNMATCHED = "unmatched"
DRAIN_PIECE_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class Route:
    """A route: its name (what faults are keyed on), method and full-path pattern."""

    name: str
    method: str
    pattern: re.Pattern[str]


class RouteMatch(NamedTuple):
    """The route a request matched (or ``UNMATCHED``), with the path's parameters.

    ``allowed_methods`` lists the methods of routes whose pattern matched the
    path, so an unmatched request with a known path is a 405, not a 404.
    """

    name: str
    params: dict[str, str]
    allowed_methods: tuple[str, ...]


def match_route(routes: tuple[Route, ...], method: str, path: str) -> RouteMatch:
    """Find the route for ``method`` and ``path``."""
    allowed: list[str] = []
    for route in routes:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return RouteMatch(route.name, found.groupdict(), (method,))
        allowed.append(route.method)
    return RouteMatch(UNMATCHED, {}, tuple(allowed))


@dataclass(frozen=True)
class RequestRecord:
    """What the sandbox remembers of one request: never a value, never a query."""

    method: str
    path: str
    headers: tuple[str, ...]
    had_api_key: bool
    server: str

    def as_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": list(self.headers),
            "hadApiKey": self.had_api_key,
            "server": self.server,
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

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)


class FaultHook(Protocol):
    """Consulted once per request, after routing and before the route runs.

    A hook may delay the request, wrap the handler's ``rfile`` / ``wfile``
    (to limit bandwidth or stall), answer the request itself or cut the
    connection. It returns True when it has dealt with the request, in which
    case the route does not run; a hook that answers without reading the body
    calls :meth:`SandboxHandler.close_after_response` first.
    """

    def intercept(self, server: str, route: str, handler: SandboxHandler) -> bool: ...


class NoFaults:
    """The fault hook of a well-behaved sandbox: it never intervenes."""

    def intercept(self, server: str, route: str, handler: SandboxHandler) -> bool:
        return False


@dataclass
class SandboxState:
    """What both servers share; ``storage_host`` is set once storage has its port."""

    api_key: str
    jobs: JobBook
    store: ObjectStore
    presigner: Presigner
    requests: RequestLog = field(default_factory=RequestLog)
    faults: FaultHook = field(default_factory=NoFaults)
    storage_host: str = ""


class Target(NamedTuple):
    """A request target split into its path and query (both as sent)."""

    path: str
    query: str


class SandboxHandler(BaseHTTPRequestHandler):
    """The base of both servers' handlers: dispatch, responses, body bookkeeping.

    Subclasses set ``role`` (``"api"`` or ``"storage"``), ``routes``,
    ``software`` (the Server header), ``drain_limit`` (the largest unread body
    drained rather than cut off), and implement :meth:`answer`.
    """

    protocol_version = "HTTP/1.1"
    timeout = 30.0
    server: SandboxServer

    role: ClassVar[str]
    routes: ClassVar[tuple[Route, ...]]
    software: ClassVar[str]
    drain_limit: ClassVar[int]

    def setup(self) -> None:
        super().setup()
        self.body_remaining: int | None = 0
        self._continue_sent = False
        self._linger = False

    def do_GET(self) -> None:
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def dispatch(self) -> None:
        """Record, route, consult the fault hook, answer; refusals become responses."""
        path, _, query = self.path.partition("?")
        target = Target(path, query)
        self.body_remaining = _declared_body_length(
            self.headers.get("Transfer-Encoding"), self.headers.get("Content-Length")
        )
        self._continue_sent = False
        state = self.server.state
        state.requests.record(
            RequestRecord(
                method=self.command,
                path=target.path,
                headers=tuple(self.headers.keys()),
                had_api_key="X-API-Key" in self.headers,
                server=self.role,
            )
        )

        found = match_route(self.routes, self.command, target.path)
        try:
            if state.faults.intercept(self.role, found.name, self):
                return
            self.answer(found, target)
        except SandboxRefusal as refusal:
            self._send_refusal(refusal)

    def answer(self, found: RouteMatch, target: Target) -> None:
        """Answer the request; raise a refusal to answer with an error."""
        raise NotImplementedError

    def send_body(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send a whole response with its Content-Length (no body for HEAD)."""
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_continue(self) -> None:
        """Send ``100 Continue`` if the client waits for it before its body."""
        if self._awaits_continue():
            self.send_response_only(100)
            self.end_headers()
            self._continue_sent = True

    def close_after_response(self) -> None:
        """Close the connection after this response, reading what still arrives."""
        self.close_connection = True
        self._linger = True

    def handle_expect_100(self) -> bool:
        # The 100 Continue is sent only once the request passed its checks,
        # so that a refused upload never sends its body (as with S3).
        return True

    def version_string(self) -> str:
        return self.software

    def log_message(self, format: str, *args: Any) -> None:
        # http.server would print each request line, signed query included.
        return

    def finish(self) -> None:
        super().finish()
        if self._linger:
            _linger_close(self.connection)

    def _send_refusal(self, refusal: SandboxRefusal) -> None:
        if refusal.close_connection or not self._drain_unread_body():
            self.close_after_response()
        body, content_type, headers = refusal.render()
        self.send_body(refusal.status, body, content_type=content_type, headers=headers)

    def _drain_unread_body(self) -> bool:
        """Read and drop the unread body; False when the connection must close."""
        remaining = self.body_remaining
        if remaining is None or remaining > self.drain_limit:
            return False
        if remaining and self._awaits_continue():
            return False
        try:
            while remaining > 0:
                piece = self.rfile.read(min(remaining, DRAIN_PIECE_BYTES))
                if not piece:
                    return False
                remaining -= len(piece)
        except OSError:
            return False
        self.body_remaining = 0
        return True

    def _awaits_continue(self) -> bool:
        expects = self.headers.get("Expect", "").lower() == "100-continue"
        http_1_1 = self.request_version != "HTTP/1.0"
        return expects and http_1_1 and not self._continue_sent


def _declared_body_length(
    transfer_encoding: str | None, content_length: str | None
) -> int | None:
    """The body length the headers promise: 0 without one, None when unknown."""
    if transfer_encoding is not None:
        return None
    if content_length is None:
        return 0
    try:
        length = int(content_length.strip())
    except ValueError:
        return None
    return length if length >= 0 else None


def _linger_close(connection: socket.socket) -> None:
    """Half-close, then read briefly, so that unread client data causes no reset.

    Closing a socket with unread data makes the kernel send a reset, which can
    destroy the response before the client has read it.
    """
    deadline = time.monotonic() + LINGER_SECONDS
    try:
        connection.shutdown(socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            connection.settimeout(left)
            if not connection.recv(DRAIN_PIECE_BYTES):
                return
    except OSError:
        return


class SandboxServer(ThreadingHTTPServer):
    """A threaded HTTP server that can cut its open connections when it stops.

    Handler threads are tracked, so :meth:`server_close` waits for them;
    :meth:`cut_connections` first wakes any that wait on an idle client.
    """

    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[SandboxHandler],
        state: SandboxState,
    ) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Shut down every open connection so that its handler thread ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away is normal; anything else is a sandbox bug,
        # reported in one line without the request (it may hold a signed URL).
        error = sys.exc_info()[1]
        if error is None or isinstance(error, OSError):
            return
        frame = error.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = (
            f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
        )
        print(
            f"glossi-sandbox: internal error {type(error).__name__} at {where}",
            file=sys.stderr,
        )
