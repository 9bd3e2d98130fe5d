"""Never lose a file: kill the real daemon at every step and restart it.

Each test drops real sample models, lets the daemon SIGKILL itself at a named
crash point (``GLOSSI_WATCH_CRASH_AT``), starts it again, and checks what a
studio would check: every file is in exactly one place, byte-identical, with
a sidecar; the API saw exactly one confirmed job for the drop.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from glossi_watch.crashpoints import CRASH_POINTS
from glossi_watch.glb import write_synthetic_glb
from tests.harness import Daemon, SandboxProcess, wait_for, write_config

SAMPLE_NAMES = ("Box.glb", "BoxTextured.glb", "barrel.glb")
TERMINAL_FILE_STATES = {"filed", "gone"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_until_killed(config: Path, log: Path, point: str) -> None:
    daemon = Daemon(config, log, env={"GLOSSI_WATCH_CRASH_AT": point}).start()
    assert daemon.process is not None
    code = daemon.process.wait(timeout=120)
    assert code == -signal.SIGKILL, f"did not die at {point}: exit {code}"


def run_until_filed(config: Path, log: Path, hot: Path, count: int) -> None:
    daemon = Daemon(config, log).start()
    wait_for(lambda: len(list((hot / "done").glob("*.json"))) >= count, timeout=120)
    assert daemon.stop() == 0


def store_rows(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def check_invariants(
    tmp_path: Path, sandbox: SandboxProcess, originals: dict[str, str], crashes: int
) -> None:
    hot = tmp_path / "hot"
    for name, digest in originals.items():
        places = [d / name for d in (hot, hot / "done", hot / "failed")]
        present = [path for path in places if path.exists()]
        assert present == [hot / "done" / name], f"{name} is in {present}"
        assert sha256(hot / "done" / name) == digest
        sidecar = json.loads((hot / "done" / f"{name}.json").read_text())
        assert sidecar["status"] == "done" and sidecar["sha256"] == digest
    assert sorted(p.name for p in (hot / "done").iterdir()) == sorted(
        [*originals, *(f"{name}.json" for name in originals)]
    )

    jobs = sandbox.jobs()
    confirmed = [job for job in jobs if job["confirmCount"] > 0]
    assert len(confirmed) == 1 and confirmed[0]["confirmCount"] == 1
    assert {m["fileName"]: m["sha256"] for m in confirmed[0]["models"]} == originals
    orphans = [job for job in jobs if job["confirmCount"] == 0]
    assert len(orphans) <= crashes

    db = tmp_path / "state" / "state.db"
    files = store_rows(db, "SELECT rel_path, state FROM files")
    assert {row["state"] for row in files} <= TERMINAL_FILE_STATES
    assert {row["state"] for row in store_rows(db, "SELECT state FROM batches")} == {
        "filed"
    }
    assert store_rows(db, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_kill_at_any_step_loses_nothing_and_confirms_once(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path, point: str
) -> None:
    config = write_config(tmp_path, sandbox)
    hot = tmp_path / "hot"
    originals = {}
    for name in SAMPLE_NAMES:
        shutil.copyfile(samples / name, hot / name)
        originals[name] = sha256(samples / name)
    log = tmp_path / "daemon.log"

    run_until_killed(config, log, point)
    run_until_filed(config, log, hot, len(SAMPLE_NAMES))

    check_invariants(tmp_path, sandbox, originals, crashes=1)
    text = log.read_text()
    assert sandbox.api_key not in text and "X-Amz-Signature" not in text


def test_a_kill_during_the_third_upload_resends_only_the_third(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox, folder={"debounce_seconds": 3.0})
    hot = tmp_path / "hot"
    staging = tmp_path / "staging"
    staging.mkdir()
    write_synthetic_glb(staging / "large.glb", 24 * 1024 * 1024, seed=7)
    names = ["Box.glb", "BoxTextured.glb"]
    for name in names:
        shutil.copyfile(samples / name, staging / name)
    log = tmp_path / "daemon.log"
    daemon = Daemon(config, log, env={"GLOSSI_WATCH_CRASH_AT": "upload_midway:3"})
    daemon.start()
    assert daemon.process is not None

    for name in [*names, "large.glb"]:  # The large file is detected last.
        shutil.copyfile(staging / name, hot / name)
        wait_for(lambda n=name: f'"file": "{n}"' in log.read_text(), timeout=30)
    assert daemon.process.wait(timeout=120) == -signal.SIGKILL
    puts_before = [r for r in sandbox.requests() if r["method"] == "PUT"]
    assert len(puts_before) == 3

    run_until_filed(config, log, hot, 3)

    puts = [r for r in sandbox.requests() if r["method"] == "PUT"]
    assert len(puts) == 4
    assert puts[3]["path"] == puts[2]["path"]  # Only the large file again.
    originals = {name: sha256(staging / name) for name in [*names, "large.glb"]}
    check_invariants(tmp_path, sandbox, originals, crashes=1)
    (job,) = sandbox.jobs()
    large = next(m for m in job["models"] if m["fileName"] == "large.glb")
    assert large["size"] == 24 * 1024 * 1024


def test_the_same_name_dropped_twice_keeps_both(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox)
    hot = tmp_path / "hot"
    daemon = Daemon(config, tmp_path / "daemon.log").start()

    shutil.copyfile(samples / "Box.glb", hot / "chair.glb")
    wait_for(lambda: (hot / "done" / "chair.glb.json").exists(), timeout=90)
    shutil.copyfile(samples / "BoxTextured.glb", hot / "chair.glb")
    wait_for(lambda: (hot / "done" / "chair (2).glb.json").exists(), timeout=90)
    assert daemon.stop() == 0

    first = json.loads((hot / "done" / "chair.glb.json").read_text())
    second = json.loads((hot / "done" / "chair (2).glb.json").read_text())
    assert sha256(hot / "done" / "chair.glb") == sha256(samples / "Box.glb")
    assert sha256(hot / "done" / "chair (2).glb") == sha256(samples / "BoxTextured.glb")
    assert first["job_id"] != second["job_id"]
    assert second["file"] == "chair.glb" and second["stored_as"] == "chair (2).glb"
    assert not (hot / "chair.glb").exists()
