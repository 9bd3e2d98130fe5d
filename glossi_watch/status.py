"""``glossi-watch status``: what the daemon is doing, read from its store.

It opens the database read-only (WAL lets it read while the daemon writes)
and never takes the daemon's lock, so it is safe to run at any time.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import PurePath
from typing import Any

from glossi_watch.config import Config
from glossi_watch.errors import StoreError
from glossi_watch.store import open_read_only

_WAITING = ("detected", "ready")
_RECENT = 10


def collect_status(config: Config) -> dict[str, Any]:
    """Per folder: counts by state, active batches, recent outcomes, orphans."""
    if not config.state_db.exists():
        raise StoreError(
            f"no state database at {config.state_db}: the daemon has not run "
            "with this configuration yet"
        )
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
        "SELECT id, state, job_id, job_status, retry_count, created_at, "
        "(SELECT detail FROM attempts WHERE attempts.batch_id = batches.id "
        "AND outcome = 'retry' ORDER BY attempts.id DESC LIMIT 1) AS last_error "
        "FROM batches WHERE folder = ? AND state != 'filed' ORDER BY id",
        (folder,),
    )
    waiting = _rows(
        conn,
        "SELECT rel_path, state, size, detected_at FROM files "
        "WHERE folder = ? AND state IN ('detected', 'ready') ORDER BY id",
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
        "waiting_files": waiting,
        "counts": counts,
        "active_batches": batches,
        "recently_done": [row for row in recent if row["outcome"] == "done"],
        "recently_failed": [row for row in recent if row["outcome"] != "done"],
    }


def _stored_as(row: dict[str, Any]) -> str:
    """The name in done/ or failed/, with the dropped name when it differs."""
    stored = PurePath(row["destination"] or row["rel_path"]).name
    dropped = PurePath(row["rel_path"]).name
    return stored if stored == dropped else f"{stored} (dropped as {dropped})"


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
        for row in folder["waiting_files"]:
            settling = "settling" if row["state"] == "detected" else "ready"
            print(f"  {settling:8s} {row['rel_path']}  since {row['detected_at']}")
        for batch in folder["active_batches"]:
            print(
                f"  batch {batch['id']}: {batch['state']}"
                f" job {batch['job_id'] or '-'} ({batch['job_status'] or '-'})"
            )
            if batch["retry_count"] and batch["last_error"]:
                print(f"    retrying: {batch['last_error']}")
        for row in folder["recently_done"]:
            print(f"  done   {_stored_as(row)}  {row['filed_at']}")
        for row in folder["recently_failed"]:
            print(f"  failed {_stored_as(row)}  {row['reason']}  {row['filed_at']}")
    for orphan in status["possible_orphan_jobs"]:
        print(f"possible orphan job for batch {orphan['batch_id']}: {orphan['note']}")
    return 0
