"""Grouping the ready files of one folder into batches, one job each.

A batch closes when no new file has become ready for ``debounce_seconds``
(the window restarts at each arrival), or when it holds ``max_batch_files``,
or when its oldest file has waited ``max_batch_wait_seconds``, whichever
comes first. Time is wall-clock UTC from the store, so the decision survives a
restart: files that were ready before a crash close their batch on schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from glossi_watch.config import FolderConfig
from glossi_watch.store import Row


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def batches_due(
    ready: Sequence[Row], folder: FolderConfig, now: float
) -> list[list[int]]:
    """File ids to group now, as a list of batches (each at most the cap)."""
    if not ready:
        return []
    rows = sorted(ready, key=lambda row: (row["ready_at"], row["id"]))
    times = [_seconds(row["ready_at"]) for row in rows]
    ids = [int(row["id"]) for row in rows]
    cap = folder.max_batch_files

    quiet = now - times[-1] >= folder.debounce_seconds
    overdue = now - times[0] >= folder.max_batch_wait_seconds
    if quiet or overdue:
        return [ids[start : start + cap] for start in range(0, len(ids), cap)]
    full = len(ids) // cap
    return [ids[index * cap : (index + 1) * cap] for index in range(full)]
