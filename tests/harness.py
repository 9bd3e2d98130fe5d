"""Running the sandbox and the daemon as real processes, for tests."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomli_w

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Every daemon a test started; conftest kills what a failing test left running.
RUNNING: list[Daemon] = []


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def run_command(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``glossi-watch ARGS`` as a child process, with no terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "glossi_watch", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env=_environment(),
    )


SANDBOX_COMMAND_SCRIPT = (
    "import argparse, sys\n"
    "from glossi_watch.sandbox import command\n"
    "parser = argparse.ArgumentParser()\n"
    "command.add_arguments(parser)\n"
    "sys.exit(command.run(parser.parse_args(sys.argv[1:])))\n"
)


def sandbox_command_process(
    args: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """The sandbox command's run() in a child process, with ``args``."""
    return subprocess.Popen(
        [sys.executable, "-c", SANDBOX_COMMAND_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **(env if env is not None else os.environ),
            "PYTHONPATH": str(PROJECT_ROOT),
        },
        text=True,
    )


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOSSI")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.update(extra or {})
    return env


@dataclass
class SandboxProcess:
    process: subprocess.Popen[str]
    api_base_url: str
    api_key: str

    @classmethod
    def start(
        cls, data_dir: Path, *, step_seconds: float = 0.2, extra: Sequence[str] = ()
    ) -> SandboxProcess:
        api_key = "glsi_test_" + secrets.token_hex(8)
        command = [
            sys.executable,
            "-m",
            "glossi_watch",
            "sandbox",
            "--port",
            "0",
            "--api-key",
            api_key,
            "--data-dir",
            str(data_dir),
            "--step-seconds",
            str(step_seconds),
            *extra,
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, env=_environment()
        )
        assert process.stdout is not None
        first_line = process.stdout.readline().strip()
        if not first_line.startswith("http://127.0.0.1:"):
            process.kill()
            process.wait()
            process.stdout.close()
            raise AssertionError(f"sandbox did not start: {first_line!r}")
        return cls(process, first_line, api_key)

    @property
    def root_url(self) -> str:
        return self.api_base_url.removesuffix("/api/v1")

    def jobs(self) -> list[dict[str, Any]]:
        answer = httpx.get(self.root_url + "/_sandbox/jobs", timeout=10)
        answer.raise_for_status()
        jobs: list[dict[str, Any]] = answer.json()["jobs"]
        return jobs

    def requests(self) -> list[dict[str, Any]]:
        answer = httpx.get(self.root_url + "/_sandbox/requests", timeout=10)
        answer.raise_for_status()
        requests: list[dict[str, Any]] = answer.json()["requests"]
        return requests

    def add_fault(self, kind: str, route: str | None = None, **options: Any) -> None:
        body = {"kind": kind, **({"route": route} if route else {}), **options}
        answer = httpx.post(self.root_url + "/_sandbox/faults", json=body, timeout=10)
        assert answer.status_code == 201, answer.text

    def clear_faults(self) -> None:
        httpx.delete(self.root_url + "/_sandbox/faults", timeout=10).raise_for_status()

    def requests_to(self, route_path_part: str, method: str) -> list[dict[str, Any]]:
        return [
            request
            for request in self.requests()
            if request["method"] == method and route_path_part in request["path"]
        ]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


@dataclass
class Daemon:
    """``glossi-watch run`` as a child process, its output in a log file."""

    config_path: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    umask: int = -1
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "glossi_watch",
                "run",
                "--config",
                str(self.config_path),
                "--log-level",
                "debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(self.env),
            umask=self.umask,
        )
        log.close()
        RUNNING.append(self)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def write_config(
    directory: Path,
    sandbox: SandboxProcess,
    *,
    folder: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
) -> Path:
    """A daemon configuration for one hot folder at ``directory / 'hot'``."""
    key_file = directory / "api-key"
    key_file.write_text(sandbox.api_key + "\n")
    key_file.chmod(0o600)
    hot = directory / "hot"
    hot.mkdir(exist_ok=True)
    document = {
        "state_db": str(directory / "state" / "state.db"),
        "scan_interval_seconds": 2,
        "api": {
            "base_url": sandbox.api_base_url,
            "api_key_file": str(key_file),
            "poll_interval_seconds": 0.2,
            "max_poll_interval_seconds": 0.5,
            **(api or {}),
        },
        "folders": [
            {
                "path": str(hot),
                "template_id": "template-1",
                "debounce_seconds": 1.0,
                "settle_seconds": 0.5,
                **(folder or {}),
            }
        ],
    }
    path = directory / "glossi-watch.toml"
    path.write_text(tomli_w.dumps(document))
    path.chmod(0o600)
    return path
