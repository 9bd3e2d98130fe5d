"""Putting a file whose outcome is known into ``done/`` or ``failed/``.

Filing is three durable steps, each safe to repeat after a crash:

1. ``moving``: the outcome and the chosen destination are committed first;
2. the move itself (:func:`glossi_watch.filing.move_file`, which never
   overwrites and never leaves the file in two places);
3. the sidecar is written atomically beside the moved file, then the row
   becomes ``filed``.

A restart that finds a row in ``moving`` simply runs steps 2 and 3 again.
"""

from __future__ import annotations

import os
from pathlib import Path

from glossi_watch.config import FolderConfig
from glossi_watch.crashpoints import crash_point
from glossi_watch.errors import FilingError
from glossi_watch.filing import (
    choose_destination,
    ensure_dir,
    move_entry,
    move_file,
    sha256_of,
    write_json_atomic,
)
from glossi_watch.logs import get_logger
from glossi_watch.names import has_linked_parent
from glossi_watch.sidecar import build_sidecar, sidecar_path
from glossi_watch.store import Row, StateStore, utc_now

_MAX_NAME_RACES = 5


class Filer:
    """Files rows of one store into their folders' ``done/`` and ``failed/``."""

    def __init__(self, store: StateStore, folders: dict[str, FolderConfig]) -> None:
        self.store = store
        self.folders = folders
        self.log = get_logger()

    def file(
        self,
        row: Row,
        *,
        outcome: str,
        reason: str | None = None,
        message: str | None = None,
        batch: Row | None = None,
    ) -> None:
        """File ``row`` with ``outcome`` (``done`` or ``failed``), resumably."""
        folder = self.folders[row["folder"]]
        source = folder.path / row["rel_path"]
        if not folder.path.is_dir():
            raise FilingError(folder.path, "is not available (a share offline?)")
        if has_linked_parent(folder, row["rel_path"]):
            # Never move what now lies outside the folder through a link.
            self._record_lost(row, "a folder on its path became a link")
            return
        if self._replaced(row, source):
            return

        final = self._move(row, folder, source, outcome, reason, message)
        if final is None:
            return
        crash_point("file_moved")
        row = self.store.file(row["id"])

        attempts = self.store.attempts_for_file(row["id"], row.get("batch_id"))
        history = self.store.history(row["id"])
        document = build_sidecar(row, batch, attempts, final, history)
        write_json_atomic(sidecar_path(final), document)
        crash_point("sidecar_written")
        self.store.update_file(
            row["id"], state="filed", destination=str(final), filed_at=utc_now()
        )
        self.log.info(
            "file_filed",
            file=row["rel_path"],
            outcome=row["outcome"],
            reason=row.get("reason"),
            destination=str(final),
        )
        crash_point("file_filed")

    def _replaced(self, row: Row, source: Path) -> bool:
        """Whether the file at ``source`` is no longer the one ``row`` is about.

        A new version (other content) is left in the folder as a new drop,
        and this row ends as ``gone`` with the reason. The same bytes under a
        new inode or mtime (a sync tool rewriting, a ``touch``) count as the
        same file.
        """
        if not row.get("inode") or not _changed(source, row):
            return False
        destination = row.get("destination")
        if row["state"] == "moving" and destination and os.path.lexists(destination):
            return False  # Moved before a crash; a new drop took the name.
        if (
            row.get("sha256")
            and source.is_file()
            and sha256_of(source) == row["sha256"]
        ):
            return False
        self.store.update_file(
            row["id"],
            state="gone",
            reason="changed_before_filing",
            message="The file changed after it was checked; the new version "
            "stays in the folder and is handled as a new drop.",
        )
        self.log.warning("file_changed_before_filing", file=row["rel_path"])
        return True

    def _move(
        self,
        row: Row,
        folder: FolderConfig,
        source: Path,
        outcome: str,
        reason: str | None,
        message: str | None,
    ) -> Path | None:
        """Move the file to its planned place; None if it has vanished."""
        for _ in range(_MAX_NAME_RACES):
            if row["state"] != "moving":
                row = self._plan_move(row, folder, outcome, reason, message)
            destination = Path(row["destination"])
            if os.path.lexists(destination) and _replaced_since(source, row):
                return destination  # Moved before a crash; the new file is not ours.
            ensure_dir(destination.parent)
            try:
                if row["reason"] == "not_regular_file":
                    return move_entry(source, destination)
                return move_file(source, destination, expected_sha256=row.get("sha256"))
            except FilingError as exc:
                if not os.path.lexists(source) and not os.path.lexists(destination):
                    self._record_lost(row, str(exc))
                    return None
                if not os.path.lexists(destination):
                    raise  # Not a name clash: the caller retries later.
                self.log.warning(
                    "file_name_taken", file=row["rel_path"], error=str(exc)
                )
                row = {**row, "state": "placing"}
        raise FilingError(source, "no free name in the destination folder")

    def _plan_move(
        self,
        row: Row,
        folder: FolderConfig,
        outcome: str,
        reason: str | None,
        message: str | None,
    ) -> Row:
        base = folder.done_dir if outcome == "done" else folder.failed_dir
        relative = Path(row["rel_path"])
        directory = base / relative.parent  # Subfolders keep their place.
        ensure_dir(directory)
        destination = choose_destination(directory, relative.name)
        fields = {
            "state": "moving",
            "outcome": outcome,
            "reason": reason,
            "message": message,
            "destination": str(destination),
        }
        self.store.update_file(row["id"], **fields)
        crash_point("move_intent_recorded")
        return {**row, **fields}

    def _record_lost(self, row: Row, detail: str) -> None:
        self.store.update_file(
            row["id"],
            state="gone",
            reason="file_vanished",
            message="The file disappeared from the folder before it could be filed.",
        )
        self.log.error(
            "file_vanished_before_filing", file=row["rel_path"], error=detail
        )


def _changed(source: Path, row: Row) -> bool:
    """Whether ``source`` exists but differs from what was uploaded."""
    try:
        status = source.lstat()
    except FileNotFoundError:
        return False
    now = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    return now != (row["device"], row["inode"], row["size"], row["mtime_ns"])


def _replaced_since(source: Path, row: Row) -> bool:
    """Whether ``source`` now names a different file than the one ``row`` saw."""
    if not row.get("inode"):
        return False
    try:
        status = source.lstat()
    except FileNotFoundError:
        return False
    return (status.st_dev, status.st_ino) != (row["device"], row["inode"])
