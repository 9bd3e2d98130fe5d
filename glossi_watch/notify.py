"""The systemd notify protocol, spoken directly over ``$NOTIFY_SOCKET``.

``READY=1`` once start-up is done, ``STATUS=...`` for ``systemctl status``,
and ``WATCHDOG=1`` heartbeats every half ``$WATCHDOG_USEC``. The daemon sends
heartbeats only while it is healthy, so a silently dead thread makes systemd
restart the process. Outside systemd (no ``NOTIFY_SOCKET``) every call is a
no-op. The protocol is one datagram of ``KEY=value`` lines on a Unix socket;
a name starting with ``@`` is in the abstract namespace.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from glossi_watch.logs import get_logger


class Notifier:
    """Sends notify messages to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        path = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_seconds = _watchdog_interval(environ)
        self.log = get_logger()

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one message; False (and a log line) on failure."""
        if not self.address:
            return False
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, self.address)
        except OSError as exc:
            self.log.warning("notify_failed", error=exc.strerror or str(exc))
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def heartbeat(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half the watchdog timeout, when the watchdog is meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1_000_000 / 2
