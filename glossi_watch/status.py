"""``glossi-watch status``: what the daemon is doing, read from its store.

It opens the database read-only (WAL lets it read while the daemon writes)
and never takes the daemon's lock, so it is safe to run at any time.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from glossi_watch.config import Config
from glossi_watch.store import open_read_only

_WAITING = ("detected", "ready")
_RECENT = 10


def collect_status(config: Config) -> dict[str, Any]:
    """Per folder: counts by state, active batches, recent outcomes, orphans."""
    conn = open_read_only(config.state_db)
    try:
        return {
            "folders": [_folder_status(conn, folder.name) for folder in config.folders],
            "possible_orphan_jobs": _rows(
                conn,
                "SELECT batch_id, job_id, note, requested_at FROM jobs "
                "WHERE state = 'orphan_possible' ORDER BY id",
            ),
        }
    finally:
        conn.close()


def _folder_status(conn: sqlite3.Connection, folder: str) -> dict[str, Any]:
    counts = {
        row["state"]: row["count"]
        for row in _rows(
            conn,
            "SELECT state, count(*) AS count FROM files WHERE folder = ? "
            "GROUP BY state",
            (folder,),
        )
    }
    batches = _rows(
        conn,
        "SELECT id, state, job_id, job_status, retry_count, created_at FROM batches "
        "WHERE folder = ? AND state != 'filed' ORDER BY id",
        (folder,),
    )
    recent = _rows(
        conn,
        "SELECT rel_path, outcome, reason, destination, filed_at FROM files "
        "WHERE folder = ? AND state = 'filed' ORDER BY filed_at DESC LIMIT ?",
        (folder, _RECENT),
    )
    return {
        "folder": folder,
        "waiting": sum(counts.get(state, 0) for state in _WAITING),
        "counts": counts,
        "active_batches": batches,
        "recently_done": [row for row in recent if row["outcome"] == "done"],
        "recently_failed": [row for row in recent if row["outcome"] != "done"],
    }


def _rows(
    conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(sql, params)]


def print_status(config: Config, *, as_json: bool) -> int:
    status = collect_status(config)
    if as_json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
        return 0
    for folder in status["folders"]:
        print(f"{folder['folder']}")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(folder["counts"].items()))
        print(f"  files: {counts or 'none yet'}")
        for batch in folder["active_batches"]:
            print(
                f"  batch {batch['id']}: {batch['state']}"
                f" job {batch['job_id'] or '-'} ({batch['job_status'] or '-'})"
            )
        for row in folder["recently_done"]:
            print(f"  done   {row['rel_path']}  {row['filed_at']}")
        for row in folder["recently_failed"]:
            print(f"  failed {row['rel_path']}  {row['reason']}  {row['filed_at']}")
    for orphan in status["possible_orphan_jobs"]:
        print(f"possible orphan job for batch {orphan['batch_id']}: {orphan['note']}")
    return 0
