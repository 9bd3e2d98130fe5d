"""The HTTP plumbing that the sandbox's two servers share.

Every request on either server goes through :meth:`SandboxHandler.dispatch`,
the one place where it is recorded, matched to a route, offered to the fault
board (:meth:`~glossi_watch.sandbox.faults.FaultBoard.intercept`), and
answered; a :class:`SandboxRefusal` raised on the way (by a route or a fault)
becomes the error response. The record of a request gets the status answered,
and the fault that fired, once they are known.

Every response carries ``Content-Length``. A request answered before its
body was read has that body drained, so the connection can carry the next
request, or, when that is not possible, the connection is closed after the
response with a short lingering read so that the client still receives the
answer.

Nothing here prints or records a header value or a query string: the request
log keeps the method, the path, header names, the status and the fault only.
Methods other than GET, HEAD, POST, PUT, DELETE, PATCH and OPTIONS get
http.server's own 501 and are not logged.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from glossi_watch.sandbox.errors import SandboxRefusal
from glossi_watch.sandbox.faults import FaultBoard
from glossi_watch.sandbox.jobs import JobBook
from glossi_watch.sandbox.request_log import RequestLog, RequestRecord
from glossi_watch.sandbox.routes import Route, RouteMatch, Target, match_route
from glossi_watch.sandbox.storage import ObjectStore, Presigner

DRAIN_PIECE_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0


@dataclass
class SandboxState:
    """What both servers share; ``storage_host`` is set once storage has its port."""

    api_key: str
    jobs: JobBook
    store: ObjectStore
    presigner: Presigner
    requests: RequestLog = field(default_factory=RequestLog)
    faults: FaultBoard = field(default_factory=FaultBoard)
    storage_host: str = ""


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
        self.record: RequestRecord | None = None
        self._continue_sent = False
        self._linger = False
        self._abort = False

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
        self.record = RequestRecord(
            method=self.command,
            path=target.path,
            headers=tuple(self.headers.keys()),
            had_api_key="X-API-Key" in self.headers,
            server=self.role,
        )
        state.requests.record(self.record)

        found = match_route(self.routes, self.command, target.path)
        rfile = self.rfile
        try:
            if state.faults.intercept(self.role, found.name, self):
                return
            self.answer(found, target)
        except SandboxRefusal as refusal:
            self._send_refusal(refusal)
        finally:
            # A fault may have replaced rfile for this request's body only.
            self.rfile = rfile
            self.record = None

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

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        if self.record is not None:
            self.server.state.requests.note_status(self.record, code)

    def note_fault(self, kind: str) -> None:
        """Record that a fault of ``kind`` fired on the current request."""
        if self.record is not None:
            self.server.state.requests.note_fault(self.record, kind)

    def send_before_body(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        """Answer without having read the request body: drain it, or close after."""
        if close or not self._drain_unread_body():
            self.close_after_response()
        self.send_body(status, body, content_type=content_type, headers=headers)

    def abort_connection(self) -> None:
        """End the connection with a TCP reset, without answering the request."""
        self.close_connection = True
        self._abort = True

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
        if self._abort:
            _reset(self.connection)
        elif self._linger:
            _linger_close(self.connection)

    def _send_refusal(self, refusal: SandboxRefusal) -> None:
        body, content_type, headers = refusal.render()
        self.send_before_body(
            refusal.status,
            body,
            content_type=content_type,
            headers=headers,
            close=refusal.close_connection,
        )

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


def _reset(connection: socket.socket) -> None:
    """Close with SO_LINGER 0, so that the kernel sends a reset, not a FIN.

    The connection is closed here, before the server's usual shutdown, which
    would send a FIN first; that later shutdown then fails harmlessly.
    """
    with contextlib.suppress(OSError):
        linger_off = struct.pack("ii", 1, 0)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_off)
        connection.close()


RECEIVE_BUFFER_BYTES = 128 * 1024


class SandboxServer(ThreadingHTTPServer):
    """A threaded HTTP server that can cut its open connections when it stops.

    Handler threads (daemon threads) are tracked, so :meth:`server_close`
    joins them; :meth:`cut_connections` first wakes any that wait on a
    client, and the fault board's waits must have been interrupted.
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
        self._handler_threads: set[threading.Thread] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # A small receive buffer makes a slow reader behave like a slow link:
        # loopback would otherwise let a client park megabytes in the
        # kernel and then wait for an answer while we still read them.
        self.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES
        )
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._handle_connection,
            args=(request, client_address),
            name="sandbox-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections.add(request)
            self._handler_threads.add(thread)
        thread.start()

    def _handle_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._handler_threads.discard(threading.current_thread())

    def server_close(self) -> None:
        super().server_close()
        with self._connections_lock:
            threads = list(self._handler_threads)
        for thread in threads:
            thread.join()

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
