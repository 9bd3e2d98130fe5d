"""The state store: durable settings, one writer, versions, local disks only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from glossi_watch.errors import StoreError
from glossi_watch.store import SCHEMA_VERSION, StateStore, refuse_remote_location

MOUNTINFO = """\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:50 / /mnt/studio rw,relatime shared:2 - cifs //nas/studio rw,vers=3.0
41 22 0:51 / /mnt/nfs\\040share rw,relatime shared:3 - nfs4 nas:/export rw
42 22 0:52 / /mnt/cloud rw,relatime shared:4 - fuse.rclone drive: rw
"""


def test_a_new_store_is_durable_and_versioned(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    try:
        journal = store.db.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = store.db.execute("PRAGMA synchronous").fetchone()[0]
        version = store.db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        store.close()

    assert journal == "wal"
    assert synchronous == 2  # FULL
    assert version == SCHEMA_VERSION


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    first = StateStore(tmp_path / "state.db")
    try:
        with pytest.raises(StoreError, match="in use by another"):
            StateStore(tmp_path / "state.db")
    finally:
        first.close()

    StateStore(tmp_path / "state.db").close()  # Free again once closed.


def test_a_newer_schema_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError, match="upgrade glossi-watch"):
        StateStore(path)


def test_reopening_keeps_what_was_committed(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    file_id = store.add_file("/hot", "chair.glb", state="ready")
    batch_id = store.create_batch("/hot", [file_id])
    store.close()

    again = StateStore(tmp_path / "state.db")
    try:
        assert again.file(file_id)["state"] == "batched"
        assert again.batch(batch_id)["state"] == "pending"
    finally:
        again.close()


def test_one_active_row_per_name(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    try:
        first = store.add_file("/hot", "chair.glb", state="detected")
        with pytest.raises(StoreError):
            store.add_file("/hot", "chair.glb", state="detected")
        store.update_file(first, state="filed")
        store.add_file("/hot", "chair.glb", state="detected")  # A new drop.
    finally:
        store.close()


@pytest.mark.parametrize(
    "location", ["/mnt/studio/state.db", "/mnt/nfs share/x/state.db", "/mnt/cloud/s.db"]
)
def test_a_network_location_is_refused(tmp_path: Path, location: str) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)

    with pytest.raises(StoreError, match="local disk"):
        refuse_remote_location(Path(location), mountinfo=mountinfo)


def test_a_local_location_is_accepted(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)

    refuse_remote_location(Path("/var/lib/glossi-watch/state.db"), mountinfo=mountinfo)
