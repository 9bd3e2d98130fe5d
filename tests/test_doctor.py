"""glossi-watch check: says what is ready, what is not, and never the key.

Every check runs against the real sandbox process over 127.0.0.1 and real
folders under tmp_path.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from glossi_watch.cli import main
from glossi_watch.fsinfo import mount_of
from tests.harness import SandboxProcess, write_config


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["check", "--config", str(config)])
    return status, capsys.readouterr().out


def lines_with(output: str, level: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(level + " ")]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class TestCheck:
    def test_ready_installation_passes(
        self,
        tmp_path: Path,
        sandbox: SandboxProcess,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A good key and writable folders: exit 0, every finding listed."""
        config = write_config(tmp_path, sandbox)

        status, output = check(config, capsys)

        assert status == 0, output
        assert not lines_with(output, "FAIL")
        hot = tmp_path / "hot"
        assert f"ok    folder {hot}: exists, readable and writable" in output
        assert "watcher mode: native" in output
        assert "inotify limits" in output
        assert "mode 0600" in output
        assert "the key was accepted" in output
        assert "safe to go live" in output
        assert sandbox.api_key not in output

    def test_refused_key_fails(
        self,
        tmp_path: Path,
        sandbox: SandboxProcess,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A key the API refuses is a FAIL that says so, without the key."""
        config = write_config(tmp_path, sandbox)
        wrong_key = "glsi_wrong_" + "0" * 16
        (tmp_path / "api-key").write_text(wrong_key + "\n")

        status, output = check(config, capsys)

        assert status == 1
        (failure,) = lines_with(output, "FAIL")
        assert "refused (HTTP 401)" in failure
        assert wrong_key not in output

    def test_missing_folder_fails(
        self,
        tmp_path: Path,
        sandbox: SandboxProcess,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A hot folder that is not there is a FAIL naming it."""
        missing = tmp_path / "not-there"
        config = write_config(tmp_path, sandbox, folder={"path": str(missing)})

        status, output = check(config, capsys)

        assert status == 1
        assert f"FAIL  folder {missing}: does not exist" in output

    def test_unmounted_share_fails(
        self,
        tmp_path: Path,
        sandbox: SandboxProcess,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A folder that should be a mounted share but sits on / is a FAIL."""
        if mount_of(tmp_path).mount_point != Path("/"):
            pytest.skip("tmp_path is on a mount of its own, not on /")
        config = write_config(tmp_path, sandbox, folder={"expect_mount": True})

        status, output = check(config, capsys)

        assert status == 1
        assert "expect_mount is set, but nothing is mounted" in output

    def test_unreachable_api_fails(
        self,
        tmp_path: Path,
        sandbox: SandboxProcess,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """An API nobody answers at is a FAIL that says it cannot be reached."""
        base_url = f"http://127.0.0.1:{closed_port()}/api/v1"
        config = write_config(tmp_path, sandbox, api={"base_url": base_url})

        status, output = check(config, capsys)

        assert status == 1
        (failure,) = lines_with(output, "FAIL")
        assert f"API {base_url}: cannot reach it" in failure

    def test_configuration_that_does_not_load_fails(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A broken configuration is one FAIL with the loader's explanation."""
        config = tmp_path / "glossi-watch.toml"
        config.write_text("[[folders]]\npath = \n")

        status, output = check(config, capsys)

        assert status == 1
        (failure,) = lines_with(output, "FAIL")
        assert f"configuration: {config}: not valid TOML" in failure
