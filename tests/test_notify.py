"""systemd's notify protocol: READY, then heartbeats only while healthy."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Daemon, SandboxProcess, wait_for, write_config


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, as systemd would offer."""
    name = "@glossi-watch-test-" + secrets.token_hex(6)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(0.2)
    try:
        yield sock, name
    finally:
        sock.close()


def receive(sock: socket.socket, seconds: float) -> list[str]:
    messages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return messages


def test_ready_then_heartbeats_that_stop_when_the_observer_dies(
    tmp_path: Path,
    sandbox: SandboxProcess,
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, name = notify_socket
    config = write_config(tmp_path, sandbox)
    daemon = Daemon(
        config,
        tmp_path / "daemon.log",
        env={
            "NOTIFY_SOCKET": name,
            "WATCHDOG_USEC": "1000000",
            "GLOSSI_WATCH_TEST_KILL_OBSERVER_ON": "kill-the-observer",
        },
    ).start()

    early: list[str] = []
    wait_for(
        lambda: early.extend(receive(sock, 0.5)) or "WATCHDOG=1" in early, timeout=60
    )
    (tmp_path / "hot" / "kill-the-observer").write_bytes(b"")
    wait_for(lambda: "watcher_died" in daemon.log_text(), timeout=60)
    settling = receive(sock, 1.0)  # Sent before the death was noticed.
    late = receive(sock, 4.0)
    assert daemon.stop() == 0

    assert early and early[0].startswith("READY=1\nSTATUS=")
    assert any(message == "WATCHDOG=1" for message in early[1:])
    assert "WATCHDOG=1" not in late
    status_lines = [m for m in early + settling + late if m.startswith("STATUS=")]
    assert status_lines and "files waiting" in status_lines[0]


def test_without_a_notify_socket_nothing_is_sent(
    tmp_path: Path, sandbox: SandboxProcess
) -> None:
    config = write_config(tmp_path, sandbox)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_for(lambda: "watch_started" in daemon.log_text(), timeout=60)

    assert daemon.stop() == 0
    assert "notify_failed" not in daemon.log_text()
