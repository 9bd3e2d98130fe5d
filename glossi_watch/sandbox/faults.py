"""The fault board: the sandbox's faults, and which one applies to a request.

The board keeps faults in the order they were added; for each request the
first active fault that matches applies, and only that one. A fault whose
count is used up stays listed, inactive, until it is removed or the board is
cleared. What a fault is and which faults are valid is in
:mod:`~glossi_watch.sandbox.fault_specs`; what a request fault does, in
:mod:`~glossi_watch.sandbox.fault_effects`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from glossi_watch.sandbox.fault_effects import apply_fault
from glossi_watch.sandbox.fault_specs import (
    DEFAULT_JOB_ERROR,
    JOB_KINDS,
    JOBS_API_ROUTES,
    REQUEST_KINDS,
    FaultSpec,
)
from glossi_watch.sandbox.jobs import ForcedEnding

if TYPE_CHECKING:
    from glossi_watch.sandbox.server import SandboxHandler


@dataclass
class Fault:
    """A fault on the board: its id, what it is, and how often it fired."""

    id: str
    spec: FaultSpec
    fired: int = 0

    @property
    def active(self) -> bool:
        return self.spec.count is None or self.fired < self.spec.count

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.spec.kind,
            "route": self.spec.route,
            "count": self.spec.count,
            "fired": self.fired,
            "active": self.active,
            **self.spec.options(),
        }


def targets(target: str, server: str, route: str) -> bool:
    """Whether a fault on ``target`` matches a request of ``route`` on ``server``."""
    if target in ("api", "any") and server == "api":
        return route in JOBS_API_ROUTES or route == "unmatched"
    if target == "any":
        return server == "storage"
    return target == route


class FaultBoard:
    """The sandbox's faults, in the order they were added; safe across threads.

    It is the fault hook of the request dispatch (:meth:`intercept`), and the
    create-job and confirm routes ask it for a URL lifetime and a forced job
    ending. Waits that faults cause (latency, stalls, bandwidth) end early
    once :meth:`interrupt_waits` is called, so that the sandbox can close.
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def add(self, spec: FaultSpec) -> dict[str, object]:
        """Add a fault after the others; return it as JSON, with its id."""
        with self._lock:
            fault = Fault(f"f{self._next_id}", spec)
            self._next_id += 1
            self._faults.append(fault)
            return fault.as_json()

    def remove(self, fault_id: str) -> dict[str, object] | None:
        """Remove one fault; return it as JSON, or None when there is no such id."""
        with self._lock:
            for fault in self._faults:
                if fault.id == fault_id:
                    self._faults.remove(fault)
                    return fault.as_json()
        return None

    def clear(self) -> int:
        """Remove every fault; return how many there were."""
        with self._lock:
            removed = len(self._faults)
            self._faults.clear()
        return removed

    def as_json(self) -> list[dict[str, object]]:
        """Every fault, active or used up, in the order they were added."""
        with self._lock:
            return [fault.as_json() for fault in self._faults]

    def intercept(self, server: str, route: str, handler: SandboxHandler) -> bool:
        """Apply the first active request fault matching this request, if any.

        Called by the dispatch once per request, after routing and before the
        route runs. A fault may delay the request, replace the handler's
        ``rfile`` for this request, answer it (raising a refusal or through
        :meth:`SandboxHandler.send_before_body`) or drop the connection.
        Returns True when the request was dealt with and the route must not run.
        """
        spec = self._claim(
            lambda fault: (
                fault.spec.kind in REQUEST_KINDS
                and targets(fault.spec.route, server, route)
            )
        )
        if spec is None:
            return False
        handler.note_fault(spec.kind)
        return apply_fault(spec, server, handler, self._closing)

    def claim_url_ttl(self, handler: SandboxHandler) -> float | None:
        """The lifetime for the URLs of a job being created, when a fault sets one."""
        spec = self._claim(lambda fault: fault.spec.kind == "url_ttl")
        if spec is None:
            return None
        handler.note_fault(spec.kind)
        return spec.seconds

    def claim_job_ending(self, handler: SandboxHandler) -> ForcedEnding | None:
        """How a job being confirmed must end, when a fault decides it."""
        spec = self._claim(lambda fault: fault.spec.kind in JOB_KINDS)
        if spec is None:
            return None
        handler.note_fault(spec.kind)
        if spec.kind == "job_hangs":
            return ForcedEnding(error=None)
        return ForcedEnding(error=spec.error or DEFAULT_JOB_ERROR)

    def interrupt_waits(self) -> None:
        """End every wait a fault causes now and later, until :meth:`allow_waits`."""
        self._closing.set()

    def allow_waits(self) -> None:
        """Let faults make requests wait again (when the sandbox starts)."""
        self._closing.clear()

    def _claim(self, matches: Callable[[Fault], bool]) -> FaultSpec | None:
        """Count one firing of the first active fault that matches."""
        with self._lock:
            for fault in self._faults:
                if fault.active and matches(fault):
                    fault.fired += 1
                    return fault.spec
        return None
