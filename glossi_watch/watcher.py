"""Turning file-system events into paths for the intake to look at.

Events are hints, never the truth: each one only says "look at this path
soon". The intake then stats the path itself, and a periodic full scan
catches whatever events never came (network shares send none for files
written by other machines; inotify drops events when its queue overflows,
which watchdog reports as ``EventsLostEvent``). So a missed event costs
latency, never a file.

One :class:`FolderWatcher` per hot folder. Events from ``done/`` and
``failed/`` (our own moves) are dropped by the intake's candidate rules.
"""

from __future__ import annotations

import os
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

from glossi_watch.config import FolderConfig
from glossi_watch.fsinfo import mount_of
from glossi_watch.logs import get_logger

# Test hook: an event for a file of this name kills the observer thread, to
# prove that heartbeats stop when a watcher thread dies.
KILL_OBSERVER_VARIABLE = "GLOSSI_WATCH_TEST_KILL_OBSERVER_ON"


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
        kill_on = os.environ.get(KILL_OBSERVER_VARIABLE)
        if kill_on and os.path.basename(os.fsdecode(event.src_path)) == kill_on:
            raise SystemExit("observer killed on purpose (test hook)")
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


def choose_mode(folder: FolderConfig) -> tuple[str, str]:
    """The watcher mode for ``folder`` and the file system type it rests on.

    ``auto`` picks polling on network and FUSE file systems, where the kernel
    sends no events for files written by other machines.
    """
    mount = mount_of(folder.path)
    if folder.watch_mode != "auto":
        return folder.watch_mode, mount.fs_type
    return ("polling" if mount.is_remote else "native"), mount.fs_type


class FolderWatcher:
    """Watches one folder and posts :class:`Seen` items to the inbox.

    In ``native`` mode a watchdog observer thread sends events. In
    ``polling`` mode there is no thread: the daemon scans the folder every
    ``poll_interval_seconds`` with :func:`glossi_watch.names.walk_candidates`,
    which never walks ``done/`` or ``failed/``.
    """

    def __init__(self, folder: FolderConfig, inbox: queue.SimpleQueue[Seen]) -> None:
        self.folder = folder
        self.mode, self.fs_type = choose_mode(folder)
        self.observer: BaseObserver | None = None
        if self.mode == "native":
            self.observer = Observer()
            self.observer.schedule(
                _Handler(folder.name, inbox),
                str(folder.path),
                recursive=folder.subfolders == "recursive",
            )
        self.log = get_logger(folder=folder.name)

    @property
    def polling(self) -> bool:
        return self.observer is None

    def start(self) -> None:
        if self.observer is not None:
            self.observer.start()
        self.log.info(
            "watch_started",
            mode=self.mode,
            chosen_by=self.folder.watch_mode,
            filesystem=self.fs_type,
        )

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            if self.observer.is_alive():
                self.observer.join(timeout=10)

    def is_alive(self) -> bool:
        return self.observer is None or self.observer.is_alive()
