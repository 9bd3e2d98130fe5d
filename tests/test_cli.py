"""The command line: every command documented, status safe while running."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from glossi_watch.cli import build_parser
from tests.harness import (
    PROJECT_ROOT,
    Daemon,
    SandboxProcess,
    run_command,
    wait_for,
    write_config,
)

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(command: str) -> None:
    result = run_command(command, "--help")

    assert result.returncode == 0
    assert len(result.stdout.strip().splitlines()) > 3
    assert f"glossi-watch {command}" in (PROJECT_ROOT / "README.md").read_text()


def test_status_reads_the_store_while_the_daemon_runs(
    tmp_path: Path, sandbox: SandboxProcess, samples: Path
) -> None:
    config = write_config(tmp_path, sandbox)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    hot = tmp_path / "hot"
    shutil.copyfile(samples / "Box.glb", hot / "Box.glb")
    wait_for(lambda: (hot / "done" / "Box.glb.json").exists(), timeout=90)

    result = run_command("status", "--config", str(config), "--json")
    text = run_command("status", "--config", str(config))
    assert daemon.stop() == 0

    assert result.returncode == 0, result.stderr
    (folder,) = json.loads(result.stdout)["folders"]
    assert folder["folder"] == str(hot)
    assert [row["rel_path"] for row in folder["recently_done"]] == ["Box.glb"]
    assert text.returncode == 0 and "done   Box.glb" in text.stdout
