"""What an operator does on a fresh machine: init, check, run, look, retry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.harness import Daemon, SandboxProcess, run_command, wait_for


def test_init_then_check_then_run_on_a_fresh_folder(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    hot = tmp_path / "hot"
    hot.mkdir()
    key_file = tmp_path / "api-key"
    key_file.write_text(sandbox.api_key + "\n")
    key_file.chmod(0o600)
    config = tmp_path / "glossi-watch.toml"

    made = run_command(
        "init",
        "--folder", str(hot),
        "--template-id", "template-7",
        "--api-key-file", str(key_file),
        "--base-url", sandbox.api_base_url,
        "--state-db", str(tmp_path / "state" / "state.db"),
        "--output", str(config),
    )  # fmt: skip
    checked = run_command("check", "--config", str(config))
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    shutil.copyfile(samples / "Box.glb", hot / "Box.glb")
    wait_for(lambda: (hot / "done" / "Box.glb.json").exists(), timeout=120)
    assert daemon.stop() == 0

    assert made.returncode == 0, made.stderr
    assert config.stat().st_mode & 0o777 == 0o600
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FAIL" not in checked.stdout
    assert sandbox.api_key not in checked.stdout + checked.stderr
    sidecar = json.loads((hot / "done" / "Box.glb.json").read_text())
    assert sidecar["status"] == "done"
    (job,) = sandbox.jobs()
    assert job["jobId"] == sidecar["job_id"]
