"""Signals: SIGHUP reloads without dropping work; SIGTERM stops cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import tomllib
from pathlib import Path

import tomli_w

from tests.harness import Daemon, SandboxProcess, wait_for, write_config


def test_sighup_applies_a_new_limit_and_a_dragged_back_file_keeps_history(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox, folder={"max_file_bytes": 2000})
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    hot = tmp_path / "hot"
    shutil.copyfile(samples / "BoxTextured.glb", hot / "crate.glb")
    wait_for(lambda: (hot / "failed" / "crate.glb.json").exists(), timeout=90)
    assert json.loads((hot / "failed" / "crate.glb.json").read_text())["reason"] == (
        "too_large"
    )

    document = tomllib.loads(config.read_text())
    document["folders"][0]["max_file_bytes"] = 10_000_000
    config.write_text(tomli_w.dumps(document))
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "config_reloaded" in daemon.log_text(), timeout=30)
    os.rename(hot / "failed" / "crate.glb", hot / "crate.glb")  # Drag it back.
    (hot / "failed" / "crate.glb.json").unlink()
    wait_for(lambda: (hot / "done" / "crate.glb.json").exists(), timeout=90)
    assert daemon.stop() == 0

    sidecar = json.loads((hot / "done" / "crate.glb.json").read_text())
    assert sidecar["status"] == "done"
    assert [entry["reason"] for entry in sidecar["history"]] == ["too_large"]


def test_a_bad_config_on_sighup_keeps_the_old_one_running(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_for(lambda: "watch_started" in daemon.log_text(), timeout=60)

    good = config.read_text()
    config.write_text(good + "\nbogus_key = 1\n")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "config_reload_failed" in daemon.log_text(), timeout=30)
    shutil.copyfile(samples / "Box.glb", tmp_path / "hot" / "Box.glb")
    wait_for(lambda: (tmp_path / "hot" / "done" / "Box.glb.json").exists(), timeout=90)

    assert daemon.stop() == 0
    assert "bogus_key" in daemon.log_text()


def test_two_sigterms_are_one_clean_stop(
    tmp_path: Path, sandbox: SandboxProcess
) -> None:
    config = write_config(tmp_path, sandbox)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_for(lambda: "watch_started" in daemon.log_text(), timeout=60)
    assert daemon.process is not None

    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    daemon.process.send_signal(signal.SIGTERM)
    code = daemon.process.wait(timeout=30)

    assert code == 0
    assert time.monotonic() - started < 10
    assert daemon.log_text().count("daemon_stopped") == 1
    assert "Traceback" not in daemon.log_text()
