"""Named points where tests can make the real daemon kill itself.

Set ``GLOSSI_WATCH_CRASH_AT`` to ``name`` (or ``name:N`` for the N-th time the
point is reached) and the daemon process SIGKILLs itself there, leaving the
disk and the state store exactly as a power cut would. :data:`CRASH_POINTS`
lists every point in pipeline order, so a test can sweep all of them. Without
the variable, :func:`crash_point` costs one dictionary look-up.
"""

from __future__ import annotations

import os
import signal
import threading

CRASH_POINTS: tuple[str, ...] = (
    "file_detected",
    "file_ready",
    "batch_created",
    "job_intent_recorded",
    "job_request_sent",
    "job_created",
    "upload_midway",
    "upload_sent",
    "upload_recorded",
    "confirm_intent_recorded",
    "confirm_sent",
    "job_confirmed",
    "job_finished_seen",
    "job_finished_recorded",
    "move_intent_recorded",
    "file_moved",
    "sidecar_written",
    "file_filed",
)

ENVIRONMENT_VARIABLE = "GLOSSI_WATCH_CRASH_AT"
_counts: dict[str, int] = {}
_lock = threading.Lock()


def _target() -> tuple[str, int] | None:
    value = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if not value:
        return None
    name, _, count = value.partition(":")
    if name not in CRASH_POINTS:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={value!r} names no crash point")
    return name, int(count or 1)


def crash_point(name: str) -> None:
    """SIGKILL this process if the environment asks for a crash at ``name``."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    target = _target()
    if target is None or target[0] != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        reached = _counts[name]
    if reached == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
