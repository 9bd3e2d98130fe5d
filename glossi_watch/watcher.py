"""Turning file-system events into paths for the intake to look at.

Events are hints, never the truth: each one only says "look at this path
soon". The intake then stats the path itself, and a periodic full scan
catches whatever events never came (network shares send none for files
written by other machines; inotify drops events when its queue overflows,
which watchdog reports as ``EventsLostEvent``). So a missed event costs
latency, never a file.

One :class:`FolderWatcher` per hot folder; watching is not recursive, so
``done/`` and ``failed/`` inside the folder are never walked.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    EventsLostEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from glossi_watch.logs import get_logger


@dataclass(frozen=True)
class Seen:
    """A path in ``folder`` worth a look; ``path`` None asks for a full scan."""

    folder: str
    path: Path | None


class _Handler(FileSystemEventHandler):
    def __init__(self, folder: str, inbox: queue.SimpleQueue[Seen]) -> None:
        self.folder = folder
        self.inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, EventsLostEvent):
            self.inbox.put(Seen(self.folder, None))
            return
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path]
        if isinstance(event, FileSystemMovedEvent):
            paths.append(event.dest_path)
        for path in paths:
            text = path.decode() if isinstance(path, bytes) else path
            self.inbox.put(Seen(self.folder, Path(text)))


class FolderWatcher:
    """Watches one folder (not its subfolders) and posts :class:`Seen` items."""

    def __init__(
        self,
        folder: str,
        path: Path,
        inbox: queue.SimpleQueue[Seen],
        *,
        polling: bool = False,
        poll_seconds: float = 2.0,
    ) -> None:
        self.folder = folder
        self.path = path
        self.observer: BaseObserver = (
            PollingObserver(timeout=poll_seconds) if polling else Observer()
        )
        self.observer.schedule(_Handler(folder, inbox), str(path), recursive=False)
        self.log = get_logger(folder=folder)

    def start(self) -> None:
        self.observer.start()
        self.log.info("watch_started", mode=type(self.observer).__name__)

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=10)

    def is_alive(self) -> bool:
        return self.observer.is_alive()
