"""The service loop: one process serving every configured hot folder.

Threads and their jobs:

- one watchdog observer per folder posts paths into an inbox (hints only);
- the loop thread (the caller of :meth:`Service.run`) drains the inbox, scans
  folders on a timer, settles and checks files (:mod:`glossi_watch.intake`),
  files rejected ones, closes batches (:mod:`glossi_watch.batcher`) and hands
  batches that are due to the worker pool;
- worker threads run :meth:`BatchRunner.advance`, one batch each at a time.

On start-up every unfinished batch in the store is resumed before new work is
taken, and every folder is scanned, so files dropped while the daemon was down
are picked up. :meth:`Service.request_stop` (SIGTERM, SIGINT) ends the loop;
uploads in flight stop at the next piece and resume on the next start.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from glossi_watch.api import GlossiClient
from glossi_watch.batcher import batches_due
from glossi_watch.config import Config, Secret
from glossi_watch.crashpoints import crash_point
from glossi_watch.errors import GlossiWatchError, StoreError
from glossi_watch.filer import Filer
from glossi_watch.intake import Intake
from glossi_watch.logs import get_logger, register_secret
from glossi_watch.pipeline import BatchRunner
from glossi_watch.retry import backoff_seconds
from glossi_watch.store import StateStore
from glossi_watch.watcher import FolderWatcher, Seen

TICK_SECONDS = 0.25
WORKERS = 4
SHUTDOWN_GRACE_SECONDS = 8.0


class Service:
    """The daemon; build it from a validated :class:`Config` and call run()."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop = threading.Event()
        self.log = get_logger()
        self.inbox: queue.SimpleQueue[Seen] = queue.SimpleQueue()
        self.folders = {folder.name: folder for folder in config.folders}
        self.watchers: dict[str, FolderWatcher] = {}
        self._in_flight: set[int] = set()
        self._in_flight_lock = threading.Lock()
        self._fatal: BaseException | None = None
        self._api_key: Secret = config.api.key_source.read()
        register_secret(self._api_key.reveal())

    def request_stop(self) -> None:
        """Ask the loop to finish; safe from a signal handler, idempotent."""
        self.stop.set()

    def run(self) -> None:
        """Serve until :meth:`request_stop`; raises if the store fails."""
        self.store = StateStore(self.config.state_db)
        self.client = GlossiClient(self.config.api, self._api_key)
        self.filer = Filer(self.store, self.folders)
        self.runner = BatchRunner(
            store=self.store,
            client=self.client,
            filer=self.filer,
            folders=self.folders,
            api=self.config.api,
            api_key=lambda: self._api_key,
            stop=self.stop,
            on_release=self._look_again,
        )
        self.intakes = {
            name: Intake(folder, self.store) for name, folder in self.folders.items()
        }
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="glossi-batch")
        try:
            self._serve()
        finally:
            self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    def _serve(self) -> None:
        self.log.info(
            "daemon_started",
            folders=len(self.folders),
            state_db=str(self.config.state_db),
        )
        self._dispatch()  # Resume unfinished batches before new work.
        self._watch_folders()
        self._scan_all()
        next_scan = time.monotonic() + self.config.scan_interval_seconds

        while not self.stop.is_set():
            self._drain_inbox(time.monotonic() + TICK_SECONDS)
            if time.monotonic() >= next_scan:
                self._watch_folders()
                self._scan_all()
                next_scan = time.monotonic() + self.config.scan_interval_seconds
            for intake in self.intakes.values():
                intake.settle()
            self._file_rejected()
            self._close_batches()
            self._dispatch()

    def _shutdown(self) -> None:
        self.stop.set()
        for watcher in self.watchers.values():
            watcher.stop()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pool.shutdown(wait=not self._in_flight, cancel_futures=True)
        self.client.close()
        self.store.close()
        self.log.info("daemon_stopped")

    # -- watching and scanning -----------------------------------------------

    def _watch_folders(self) -> None:
        for name, folder in self.folders.items():
            watcher = self.watchers.get(name)
            present = folder.path.is_dir()
            if watcher is not None and (not present or not watcher.is_alive()):
                self.log.warning("folder_unavailable", folder=name)
                watcher.stop()
                del self.watchers[name]
            elif watcher is None and present:
                watcher = FolderWatcher(name, folder.path, self.inbox)
                watcher.start()
                self.watchers[name] = watcher
            elif watcher is None:
                self.log.warning("folder_missing", folder=name)

    def _look_again(self, folder: str, rel_path: str) -> None:
        """Ask the loop to look at a file that left its batch (any thread)."""
        self.inbox.put(Seen(folder, self.folders[folder].path / rel_path))

    def _scan_all(self) -> None:
        for name in self.watchers:
            self._scan(name)

    def _scan(self, name: str) -> None:
        intake = self.intakes[name]
        paths = set(intake.scan())
        for state in ("detected", "ready"):
            for row in self.store.files_in_state(state, folder=name):
                paths.add(self.folders[name].path / row["rel_path"])
        for path in sorted(paths):
            intake.observe(path)

    def _drain_inbox(self, until: float) -> None:
        while not self.stop.is_set():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            try:
                seen = self.inbox.get(timeout=remaining)
            except queue.Empty:
                return
            if seen.path is None:
                self.log.warning("watch_events_lost", folder=seen.folder)
                self._scan(seen.folder)
            else:
                self.intakes[seen.folder].observe(seen.path)

    # -- moving work along ---------------------------------------------------

    def _file_rejected(self) -> None:
        for row in self.store.files_in_state("rejected", "moving"):
            if row["batch_id"] is not None:
                continue  # Batched files are filed by their batch.
            try:
                self.filer.file(
                    row, outcome="failed", reason=row["reason"], message=row["message"]
                )
            except (OSError, GlossiWatchError) as exc:
                if isinstance(exc, StoreError):
                    raise
                self.log.error("filing_failed", file=row["rel_path"], error=str(exc))

    def _close_batches(self) -> None:
        now = time.time()
        for name, folder in self.folders.items():
            ready = self.store.files_in_state("ready", folder=name)
            for file_ids in batches_due(ready, folder, now):
                batch_id = self.store.create_batch(name, file_ids)
                self.log.info("batch_created", batch=batch_id, files=len(file_ids))
                crash_point("batch_created")

    def _dispatch(self) -> None:
        now = time.time()
        for batch in self.store.unfinished_batches():
            if (batch["next_step_at"] or 0) > now:
                continue
            with self._in_flight_lock:
                if batch["id"] in self._in_flight:
                    continue
                self._in_flight.add(batch["id"])
            self.pool.submit(self._advance, batch["id"])

    def _advance(self, batch_id: int) -> None:
        try:
            self.runner.advance(batch_id)
        except StoreError as exc:
            self._fatal = exc
            self.log.error("state_store_failed", error=str(exc))
            self.stop.set()
        except Exception as exc:  # A bug must not stall the daemon.
            self.log.exception("batch_step_crashed", batch=batch_id, error=repr(exc))
            self._postpone(batch_id)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(batch_id)

    def _postpone(self, batch_id: int) -> None:
        batch = self.store.batch(batch_id)
        count = (batch["retry_count"] or 0) + 1
        self.store.update_batch(
            batch_id,
            retry_count=count,
            next_step_at=time.time() + backoff_seconds(count),
        )


def folder_paths(config: Config) -> list[Path]:
    """Every directory the daemon writes to, for service managers' sandboxes."""
    paths: list[Path] = [config.state_db.parent]
    for folder in config.folders:
        paths += [folder.path, folder.done_dir, folder.failed_dir]
    return paths
