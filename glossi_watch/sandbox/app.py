"""The :class:`Sandbox`: both servers of the sandbox, started and stopped together."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from glossi_watch.sandbox.api import ApiHandler
from glossi_watch.sandbox.errors import SandboxStartError
from glossi_watch.sandbox.fault_specs import FaultSpec, parse_fault
from glossi_watch.sandbox.jobs import JobBook
from glossi_watch.sandbox.server import SandboxHandler, SandboxServer, SandboxState
from glossi_watch.sandbox.storage import ObjectStore, Presigner
from glossi_watch.sandbox.uploads import UploadHandler

POLL_SECONDS = 0.1


class Sandbox:
    """A local stand-in for the Glossi Jobs API and the S3 bucket it uploads to.

    Two HTTP/1.1 servers on ``host``: the API on ``port`` and the storage, a
    different origin, on ``storage_port`` (0 picks a free port for either).
    Uploaded objects are kept under ``data_dir``. Upload URLs expire after
    ``url_ttl_seconds``; a confirmed job moves one status every
    ``step_seconds``. ``faults`` are in place before the first request, and
    more can be switched at run time (:meth:`add_fault`, or the
    ``/_sandbox/faults`` routes). :meth:`start` binds both servers (raising
    :class:`SandboxStartError` when it cannot) and serves them in daemon
    threads; :meth:`close` ends the waits faults cause, stops the servers,
    cuts open connections and joins every thread. As a context manager it
    starts on entry and closes on exit. Addresses are IPv4 only.
    """

    def __init__(
        self,
        *,
        api_key: str,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_port: int = 0,
        url_ttl_seconds: float = 3600.0,
        step_seconds: float = 0.5,
        faults: Iterable[FaultSpec] = (),
    ) -> None:
        if not api_key:
            raise ValueError("the sandbox needs a non-empty api_key")
        for seconds in (url_ttl_seconds, step_seconds):
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"{seconds!r} is not a number of seconds >= 0")

        self._data_dir = Path(data_dir)
        store = ObjectStore(self._data_dir)
        self._state = SandboxState(
            api_key=api_key,
            jobs=JobBook(store, step_seconds=step_seconds),
            store=store,
            presigner=Presigner(ttl_seconds=url_ttl_seconds),
        )
        for spec in faults:
            self._state.faults.add(spec)
        self._host = host
        self._port = port
        self._storage_port = storage_port
        self._api: SandboxServer | None = None
        self._storage: SandboxServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def root_url(self) -> str:
        """The API server's origin, e.g. ``http://127.0.0.1:8765``."""
        return self._origin(self._api)

    @property
    def api_base_url(self) -> str:
        """The base URL of the Jobs API, ``<root_url>/api/v1``."""
        return self.root_url + "/api/v1"

    @property
    def storage_url(self) -> str:
        """The storage server's origin, which upload URLs point at."""
        return self._origin(self._storage)

    def add_fault(
        self, kind: str, route: str | None = None, **options: object
    ) -> dict[str, object]:
        """Add a fault after the others and return it with its ``id``.

        ``options`` are ``count`` and the options of ``kind`` (see
        :mod:`~glossi_watch.sandbox.fault_specs`); a fault that is not valid
        raises :class:`~glossi_watch.sandbox.errors.InvalidFault`. Safe while
        requests are in flight.
        """
        spec = parse_fault({"kind": kind, "route": route, **options})
        return self._state.faults.add(spec)

    def remove_fault(self, fault_id: str) -> bool:
        """Remove one fault; False when there is no fault with that id."""
        return self._state.faults.remove(fault_id) is not None

    def clear_faults(self) -> None:
        """Remove every fault: from now on the sandbox behaves."""
        self._state.faults.clear()

    def faults(self) -> list[dict[str, object]]:
        """Every fault with its ``id`` and how many times it ``fired``."""
        return self._state.faults.as_json()

    def start(self) -> None:
        """Bind both servers and serve them; a second call is an error."""
        if self._api is not None:
            raise RuntimeError("the sandbox is already started")
        self._state.faults.allow_waits()
        try:
            self._state.store.prepare()
        except OSError as exc:
            problem = exc.strerror or str(exc)
            raise SandboxStartError(str(self._data_dir), problem) from exc

        storage = self._bind(self._storage_port, UploadHandler)
        try:
            api = self._bind(self._port, ApiHandler)
        except SandboxStartError:
            storage.server_close()
            raise
        self._state.storage_host = f"{self._host}:{storage.server_port}"
        self._api, self._storage = api, storage

        for server, name in ((api, "sandbox-api"), (storage, "sandbox-storage")):
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": POLL_SECONDS},
                name=name,
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop both servers and join their threads; closing twice is harmless."""
        servers = [server for server in (self._api, self._storage) if server]
        self._state.faults.interrupt_waits()
        for server in servers:
            server.shutdown()
        for server in servers:
            server.cut_connections()
            server.server_close()
        for thread in self._threads:
            thread.join()

        self._api = self._storage = None
        self._threads = []

    def __enter__(self) -> Sandbox:
        if self._api is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _bind(self, port: int, handler: type[SandboxHandler]) -> SandboxServer:
        try:
            return SandboxServer((self._host, port), handler, self._state)
        except OSError as exc:
            problem = exc.strerror or str(exc)
            raise SandboxStartError(f"{self._host}:{port}", problem) from exc

    def _origin(self, server: SandboxServer | None) -> str:
        if server is None:
            raise RuntimeError("the sandbox is not started")
        return f"http://{self._host}:{server.server_port}"
