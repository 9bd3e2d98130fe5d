"""The state store: every file, batch and job the daemon has seen, in SQLite.

One :class:`StateStore` owns one connection and is the only writer; its
methods are safe to call from several threads (a lock serialises them) and
each public write is one transaction. The database runs in WAL mode with
``synchronous=FULL``, so a committed step survives a power cut, and readers
such as ``glossi-watch status`` can look while the daemon writes.

The schema carries a version in ``PRAGMA user_version``; :data:`MIGRATIONS`
brings an older database forward at start-up, and a database newer than this
code is refused instead of being misread. No API key and no signed upload URL
is ever written here: upload URLs are kept only as sealed (encrypted) blobs,
see :mod:`glossi_watch.sealing`.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from glossi_watch.errors import StoreError
from glossi_watch.fsinfo import MOUNTINFO, mount_of
from glossi_watch.logs import redact

Row = dict[str, Any]


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _migrate_1(db: Database) -> None:
    db.table("files").create(
        {
            "id": int,
            "folder": str,
            "rel_path": str,
            "state": str,
            "size": int,
            "mtime_ns": int,
            "device": int,
            "inode": int,
            "sha256": str,
            "md5_base64": str,
            "batch_id": int,
            "model_id": str,
            "upload_seal": str,
            "outcome": str,
            "reason": str,
            "message": str,
            "destination": str,
            "detected_at": str,
            "ready_at": str,
            "uploaded_at": str,
            "filed_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"folder", "rel_path", "state"},
    )
    db.execute(
        "CREATE UNIQUE INDEX files_active ON files(folder, rel_path) "
        "WHERE state NOT IN ('filed', 'gone')"
    )
    db.table("files").create_index(["batch_id"])
    db.table("files").create_index(["state"])
    db.table("batches").create(
        {
            "id": int,
            "folder": str,
            "state": str,
            "job_id": str,
            "job_status": str,
            "job_error": str,
            "batch_project_id": str,
            "result_json": str,
            "urls_expire_at": float,
            "urls_lifetime_seconds": float,
            "next_step_at": float,
            "retry_count": int,
            "poll_count": int,
            "created_at": str,
            "confirmed_at": str,
            "finished_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"folder", "state"},
    )
    db.table("batches").create_index(["state"])
    db.table("jobs").create(
        {
            "id": int,
            "batch_id": int,
            "job_id": str,
            "state": str,
            "note": str,
            "requested_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"batch_id", "state"},
    )
    db.table("attempts").create(
        {
            "id": int,
            "batch_id": int,
            "file_id": int,
            "step": str,
            "outcome": str,
            "detail": str,
            "at": str,
        },
        pk="id",
    )
    db.table("attempts").create_index(["file_id"])


def _migrate_2(db: Database) -> None:
    # A file put back after a failure links to its earlier row, so its next
    # sidecar carries the whole history (``glossi-watch retry``, issue 6).
    db.table("files").add_column("previous_file_id", int)
    db.execute("CREATE INDEX files_sha256 ON files(folder, sha256)")


MIGRATIONS: tuple[Callable[[Database], None], ...] = (_migrate_1, _migrate_2)
SCHEMA_VERSION = len(MIGRATIONS)


class StateStore:
    """The daemon's durable memory; see the module docstring for guarantees."""

    def __init__(self, path: Path, *, exclusive: bool = True) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._lock_file: int | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            refuse_remote_location(path)
            if exclusive:
                self._lock_file = _take_lock(path)
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
            self.db = Database(conn, execute_plugins=False)
            self.db.enable_wal()
            for pragma in ("synchronous=FULL", "busy_timeout=10000"):
                self.db.execute(f"PRAGMA {pragma}")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the state database {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self.db.close()
            if self._lock_file is not None:
                os.close(self._lock_file)
                self._lock_file = None

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this "
                f"glossi-watch understands ({SCHEMA_VERSION}); upgrade glossi-watch"
            )
        for number in range(version, SCHEMA_VERSION):
            with self.db.atomic():
                MIGRATIONS[number](self.db)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Run several writes as one transaction (nested calls join it)."""
        with self._lock:
            try:
                with self.db.atomic():
                    yield self.db
            except sqlite3.Error as exc:
                raise StoreError(f"state database write failed: {exc}") from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            try:
                return [dict(row) for row in self.db.query(sql, params)]
            except sqlite3.Error as exc:
                raise StoreError(f"state database read failed: {exc}") from exc

    # -- files ---------------------------------------------------------------

    def active_file(self, folder: str, rel_path: str) -> Row | None:
        rows = self.query(
            "SELECT * FROM files WHERE folder = ? AND rel_path = ? "
            "AND state NOT IN ('filed', 'gone')",
            (folder, rel_path),
        )
        return rows[0] if rows else None

    def add_file(self, folder: str, rel_path: str, **fields: Any) -> int:
        now = utc_now()
        with self.transaction() as db:
            table = db.table("files")
            table.insert(
                {
                    "folder": folder,
                    "rel_path": rel_path,
                    "detected_at": now,
                    "updated_at": now,
                    **fields,
                }
            )
            return _pk(table.last_pk)

    def update_file(self, file_id: int, **fields: Any) -> None:
        with self.transaction() as db:
            db.table("files").update(
                file_id, {**_scrub(fields), "updated_at": utc_now()}
            )

    def file(self, file_id: int) -> Row:
        rows = self.query("SELECT * FROM files WHERE id = ?", (file_id,))
        if not rows:
            raise StoreError(f"no file {file_id} in the state database")
        return rows[0]

    def files_in_state(self, *states: str, folder: str | None = None) -> list[Row]:
        marks = ", ".join("?" for _ in states)
        sql = f"SELECT * FROM files WHERE state IN ({marks})"
        params: list[Any] = list(states)
        if folder is not None:
            sql += " AND folder = ?"
            params.append(folder)
        return self.query(sql + " ORDER BY id", params)

    def earlier_failure(
        self, folder: str, *, sha256: str | None = None, identity: Any = None
    ) -> int | None:
        """The newest filed failure of the same file in ``folder``, if any.

        The same file is the same content (``sha256``) or the same inode and
        size (``identity``, a FileIdentity: a file moved back from failed/
        keeps its inode).
        """
        same = ["sha256 = ?"]
        params: list[Any] = [folder, sha256]
        if identity is not None:
            same.append("(device = ? AND inode = ? AND size = ?)")
            params += [identity.device, identity.inode, identity.size]
        rows = self.query(
            "SELECT id FROM files WHERE folder = ? AND state = 'filed' "
            f"AND outcome = 'failed' AND ({' OR '.join(same)}) "
            "ORDER BY id DESC LIMIT 1",
            params,
        )
        return int(rows[0]["id"]) if rows else None

    def history(self, file_id: int, *, limit: int = 20) -> list[Row]:
        """Earlier attempts at the same file, newest first (via previous_file_id)."""
        chain: list[Row] = []
        previous = self.file(file_id).get("previous_file_id")
        while previous is not None and len(chain) < limit:
            row = self.file(previous)
            batch = self.batch(row["batch_id"]) if row["batch_id"] else None
            chain.append(
                {
                    "status": row["outcome"],
                    "reason": row["reason"],
                    "message": row["message"],
                    "job_id": batch["job_id"] if batch else None,
                    "filed_at": row["filed_at"],
                    "attempts": self.attempts_for_file(row["id"], row["batch_id"]),
                }
            )
            previous = row.get("previous_file_id")
        return chain

    def batch_files(self, batch_id: int) -> list[Row]:
        return self.query(
            "SELECT * FROM files WHERE batch_id = ? ORDER BY id", (batch_id,)
        )

    # -- batches and jobs ----------------------------------------------------

    def create_batch(self, folder: str, file_ids: Sequence[int]) -> int:
        """Group ready files into a new pending batch, in one transaction."""
        now = utc_now()
        with self.transaction() as db:
            table = db.table("batches")
            table.insert(
                {
                    "folder": folder,
                    "state": "pending",
                    "poll_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            batch_id = _pk(table.last_pk)
            for file_id in file_ids:
                db.table("files").update(
                    file_id,
                    {"state": "batched", "batch_id": batch_id, "updated_at": now},
                )
            return batch_id

    def batch(self, batch_id: int) -> Row:
        rows = self.query("SELECT * FROM batches WHERE id = ?", (batch_id,))
        if not rows:
            raise StoreError(f"no batch {batch_id} in the state database")
        return rows[0]

    def update_batch(self, batch_id: int, **fields: Any) -> None:
        with self.transaction() as db:
            db.table("batches").update(
                batch_id, {**_scrub(fields), "updated_at": utc_now()}
            )

    def wake_batches(self) -> None:
        """Make every unfinished batch due now (after the key was replaced)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET next_step_at = NULL, retry_count = 0 "
                "WHERE state != 'filed'"
            )

    def unfinished_batches(self) -> list[Row]:
        return self.query("SELECT * FROM batches WHERE state != 'filed' ORDER BY id")

    def add_job_record(
        self, batch_id: int, state: str, job_id: str | None = None, note: str = ""
    ) -> int:
        now = utc_now()
        with self.transaction() as db:
            table = db.table("jobs")
            table.insert(
                {
                    "batch_id": batch_id,
                    "job_id": job_id,
                    "state": state,
                    "note": note,
                    "requested_at": now,
                    "updated_at": now,
                }
            )
            return _pk(table.last_pk)

    def update_job_record(self, record_id: int, **fields: Any) -> None:
        with self.transaction() as db:
            db.table("jobs").update(
                record_id, {**_scrub(fields), "updated_at": utc_now()}
            )

    def job_records(self, batch_id: int) -> list[Row]:
        return self.query(
            "SELECT * FROM jobs WHERE batch_id = ? ORDER BY id", (batch_id,)
        )

    # -- attempts ------------------------------------------------------------

    def record_attempt(
        self,
        *,
        step: str,
        outcome: str,
        detail: str = "",
        batch_id: int | None = None,
        file_id: int | None = None,
    ) -> None:
        with self.transaction() as db:
            db.table("attempts").insert(
                {
                    "batch_id": batch_id,
                    "file_id": file_id,
                    "step": step,
                    "outcome": outcome,
                    "detail": redact(detail),
                    "at": utc_now(),
                }
            )

    def count_attempts(self, batch_id: int, outcome: str) -> int:
        """How many attempts of the batch ended with ``outcome``."""
        rows = self.query(
            "SELECT count(*) AS n FROM attempts WHERE batch_id = ? AND outcome = ?",
            (batch_id, outcome),
        )
        return int(rows[0]["n"])

    def attempts_for_file(self, file_id: int, batch_id: int | None) -> list[Row]:
        return self.query(
            "SELECT step, outcome, detail, at FROM attempts "
            "WHERE file_id = ? OR (file_id IS NULL AND batch_id = ?) ORDER BY id",
            (file_id, batch_id),
        )


def refuse_remote_location(path: Path, *, mountinfo: Path = MOUNTINFO) -> None:
    """Refuse a database on a network file system, where SQLite's locks lie."""
    mount = mount_of(path.parent, mountinfo=mountinfo)
    if mount.is_remote:
        raise StoreError(
            f"the state database {path} is on a {mount.fs_type} network file "
            f"system ({mount.mount_point}); put state_db on a local disk"
        )


def _take_lock(path: Path) -> int:
    """Hold an advisory lock beside the database: one daemon per store."""
    lock_path = path.with_name(path.name + ".lock")
    handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(handle)
        raise StoreError(
            f"{path} is in use by another glossi-watch process (lock {lock_path})"
        ) from exc
    return handle


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection for ``status`` while the daemon writes."""
    if not path.exists():
        raise StoreError(f"no state database at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path} for reading: {exc}") from exc
    conn.row_factory = sqlite3.Row
    return conn


def dumps(value: Any) -> str:
    """JSON for a text column."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_FREE_TEXT = frozenset({"message", "detail", "job_error", "note", "reason"})


def _scrub(fields: dict[str, Any]) -> dict[str, Any]:
    """Free text from the API or errors, without secrets or signed URLs.

    An API error body could echo the key or a presigned URL; what is stored
    here is copied into sidecars, so it is cleaned before it is written.
    """
    return {
        key: redact(value) if key in _FREE_TEXT and isinstance(value, str) else value
        for key, value in fields.items()
    }


def _pk(value: Any) -> int:
    if not isinstance(value, int):
        raise StoreError(f"expected an integer row id, got {value!r}")
    return value
