"""The ``sandbox`` command line, run as a real child process through run()."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.harness import sandbox_command_process


def command_process(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start the sandbox command in a child process through run()."""
    return sandbox_command_process(args, env)


class TestCommand:
    def test_a_taken_port_ends_the_command_with_one_line_and_status_1(
        self, tmp_path: Path
    ) -> None:
        """The command says which address it cannot use, without a traceback."""
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = str(taken.getsockname()[1])
            process = command_process(
                ["--port", port, "--data-dir", str(tmp_path)], dict(os.environ)
            )
            out, err = process.communicate(timeout=60)

        assert process.returncode == 1
        assert out == ""
        assert err.count("\n") == 1 and f"127.0.0.1:{port}" in err

    @pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
    def test_the_command_prints_its_url_serves_and_stops_on_a_signal(
        self, tmp_path: Path, stop_signal: signal.Signals
    ) -> None:
        """The first line is the API URL; a signal ends the command with 0."""
        env = {**os.environ, "GLOSSI_API_KEY": "from-env"}
        args = ["--port", "0", "--data-dir", str(tmp_path), "--step-seconds", "0"]
        process = command_process(args, env)
        try:
            base_url = process.stdout.readline().strip() if process.stdout else ""
            second_line = process.stdout.readline() if process.stdout else ""
            keyed = httpx.get(base_url + "/jobs/x", headers={"X-API-Key": "from-env"})
            process.send_signal(stop_signal)
            out, err = process.communicate(timeout=30)
        finally:
            process.kill()
            process.wait()

        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/api/v1")
        assert "http://127.0.0.1:" in second_line
        assert keyed.status_code == 404  # not 401: the key from the environment works
        assert process.returncode == 0
        assert "from-env" not in second_line + out + err
