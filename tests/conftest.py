"""Shared fixtures: real processes, real files, real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import RUNNING, SandboxProcess

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the operator's Glossi settings or systemd credentials."""
    for name in list(os.environ):
        if name.startswith("GLOSSI") or name in (
            "CREDENTIALS_DIRECTORY",
            "NOTIFY_SOCKET",
        ):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_leftover_daemons() -> Iterator[None]:
    """A test that fails midway must not leave its daemon running."""
    yield
    while RUNNING:
        RUNNING.pop().kill()


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread of its own running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaked = [
            thread
            for thread in threading.enumerate()
            if thread not in before and thread.is_alive()
        ]
        if not leaked:
            return
        time.sleep(0.05)
    pytest.fail(f"test leaked threads: {[thread.name for thread in leaked]}")


@pytest.fixture
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"the sample models are missing: expected them at {SAMPLES}")
    return SAMPLES


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    """The sandbox as a real process on 127.0.0.1, stopped after the test."""
    process = SandboxProcess.start(tmp_path / "sandbox-data")
    try:
        yield process
    finally:
        process.stop()
