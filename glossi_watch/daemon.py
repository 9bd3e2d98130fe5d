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

import fcntl
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from glossi_watch.api import GlossiClient
from glossi_watch.batcher import batches_due
from glossi_watch.config import Config, FolderConfig, Secret, load_config
from glossi_watch.crashpoints import crash_point
from glossi_watch.errors import ConfigError, FilingError, StoreError
from glossi_watch.filer import Filer
from glossi_watch.fsinfo import looks_unmounted
from glossi_watch.intake import Intake
from glossi_watch.logs import get_logger, register_secret
from glossi_watch.notify import Notifier
from glossi_watch.pipeline import BatchRunner
from glossi_watch.retry import backoff_seconds
from glossi_watch.store import StateStore
from glossi_watch.watcher import FolderWatcher, Seen

TICK_SECONDS = 0.25
WORKERS = 4
SHUTDOWN_GRACE_SECONDS = 8.0
STATUS_EVERY_SECONDS = 10.0
WATCH_CHECK_SECONDS = 2.0
FOLDER_LOCK_NAME = ".glossi-watch.lock"
# A batch step that has shown no progress for this long counts as stuck:
# far beyond any network timeout, so only a wedged thread gets there.
STALL_SECONDS = 900.0


class Service:
    """The daemon; build it from a validated :class:`Config` and call run()."""

    def __init__(self, config: Config, *, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.stop = threading.Event()
        self._reload_requested = threading.Event()
        self._next_scan: dict[str, float] = {}
        self._filing_retry: dict[int, tuple[float, int]] = {}
        self._key_unreadable = False
        self._next_heartbeat = self._next_status = 0.0
        self._unknown_folders: set[str] = set()
        self._folder_locks: dict[str, int] = {}
        self._dead_watchers: set[str] = set()
        self._unavailable: set[str] = set()
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

    def request_reload(self) -> None:
        """Ask the loop to re-read the configuration (SIGHUP)."""
        self._reload_requested.set()

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
            on_key_refused=self._reread_key,
        )
        self.intakes = {
            name: Intake(folder, self.store, self._report_health)
            for name, folder in self.folders.items()
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
        self._scan_due()
        self.notifier.ready(self._status_line())
        next_watch_check = time.monotonic() + WATCH_CHECK_SECONDS

        while not self.stop.is_set():
            self._drain_inbox(time.monotonic() + TICK_SECONDS)
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self._reload()
                self._next_scan.clear()
            if time.monotonic() >= next_watch_check:
                self._watch_folders()
                self._reread_key()
                next_watch_check = time.monotonic() + WATCH_CHECK_SECONDS
            self._scan_due()
            for intake in self.intakes.values():
                intake.settle()
            self._file_rejected()
            self._close_batches()
            self._dispatch()
            self._report_health()

    def _shutdown(self) -> None:
        self.stop.set()
        self.notifier.stopping()
        for watcher in self.watchers.values():
            watcher.stop()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pool.shutdown(wait=not self._in_flight, cancel_futures=True)
        self.client.close()
        self.store.close()
        for handle in self._folder_locks.values():
            os.close(handle)
        self.log.info("daemon_stopped")

    # -- watching and scanning -----------------------------------------------

    def _watch_folders(self) -> None:
        """Start, stop or restart each folder's watcher as folders come and go.

        A folder that is missing, or not mounted when ``expect_mount`` says
        it should be, is reported once and looked at again every few
        seconds; its files and their state are kept, and a full scan runs
        as soon as it is back.
        """
        for name, folder in self._active_folders():
            watcher = self.watchers.get(name)
            present = _available(folder)
            if watcher is not None and present and not watcher.is_alive():
                if name not in self._dead_watchers:
                    self._dead_watchers.add(name)
                    self.log.error("watcher_died", folder=name)
                if self.notifier.watchdog_seconds is not None:
                    continue  # Heartbeats stop; systemd restarts the process.
                self._dead_watchers.discard(name)
                del self.watchers[name]
                self._start_watcher(name)
            elif watcher is not None and not present:
                self.log.warning("folder_unavailable", folder=name)
                self._unavailable.add(name)
                watcher.stop()
                del self.watchers[name]
                self._release_folder(name)
            elif watcher is None and present:
                if self._start_watcher(name):
                    self._unavailable.discard(name)
                    self.log.info("folder_available", folder=name)
            elif watcher is None and name not in self._unavailable:
                self.log.warning("folder_unavailable", folder=name)
                self._unavailable.add(name)

    def _start_watcher(self, name: str) -> bool:
        if not self._claim_folder(name):
            return False
        watcher = FolderWatcher(self.folders[name], self.inbox)
        watcher.start()
        self.watchers[name] = watcher
        self._next_scan.pop(name, None)  # A full scan right away.
        return True

    def _release_folder(self, name: str) -> None:
        handle = self._folder_locks.pop(name, None)
        if handle is not None:
            os.close(handle)

    def _claim_folder(self, name: str) -> bool:
        """Hold a lock file in the folder: one daemon per hot folder.

        Two daemons on one folder would each upload every file. The lock is
        an flock on ``.glossi-watch.lock`` (a dotfile, so never a candidate);
        on a network share it holds only where the file system passes flock
        on between machines, so studios running several machines on one share
        must still give each its own folder.
        """
        if name in self._folder_locks:
            return True
        lock_path = self.folders[name].path / FOLDER_LOCK_NAME
        try:
            handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o664)
        except OSError as exc:
            self.log.warning("folder_lock_unavailable", folder=name, error=str(exc))
            return True  # A read-only folder still works; we cannot guard it.
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            if name not in self._unavailable:
                self._unavailable.add(name)
                self.log.error(
                    "folder_in_use",
                    folder=name,
                    detail="another glossi-watch process watches this folder",
                )
            return False
        self._folder_locks[name] = handle
        return True

    def _active_folders(self) -> list[tuple[str, FolderConfig]]:
        """The folders taking new work (a folder removed by a reload is not)."""
        return [(name, self.folders[name]) for name in self.intakes]

    def _known_folder(self, name: str) -> bool:
        """Work of a folder no longer configured waits, and is reported once."""
        if name in self.folders:
            return True
        if name not in self._unknown_folders:
            self._unknown_folders.add(name)
            self.log.error(
                "folder_not_configured",
                folder=name,
                detail="unfinished work of this folder waits until it is "
                "configured again",
            )
        return False

    def _look_again(self, folder: str, rel_path: str) -> None:
        """Ask the loop to look at a file that left its batch (any thread)."""
        self.inbox.put(Seen(folder, self.folders[folder].path / rel_path))

    def _scan_due(self) -> None:
        """Scan each watched folder whose scan (or poll) is due."""
        now = time.monotonic()
        for name, watcher in list(self.watchers.items()):
            if now < self._next_scan.get(name, 0.0):
                continue
            self._scan(name)
            interval = (
                self.folders[name].poll_interval_seconds
                if watcher.polling
                else self.config.scan_interval_seconds
            )
            self._next_scan[name] = time.monotonic() + interval

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
            elif seen.folder in self.intakes:
                self.intakes[seen.folder].observe(seen.path)

    # -- health, status and reloading -----------------------------------------

    def healthy(self) -> bool:
        """Watchers alive for every present folder, and no batch step stuck."""
        for name, folder in self._active_folders():
            watcher = self.watchers.get(name)
            if folder.path.is_dir() and (watcher is None or not watcher.is_alive()):
                return False
        now = time.monotonic()
        marks = list(self.runner.progress.values())  # Workers change it.
        return all(now - seen < STALL_SECONDS for seen in marks)

    def _report_health(self) -> None:
        now = time.monotonic()
        interval = self.notifier.watchdog_seconds
        due = interval is not None and now >= self._next_heartbeat
        if due and interval is not None and self.healthy():
            self.notifier.heartbeat()
            self._next_heartbeat = now + interval
        if self.notifier.enabled and now >= self._next_status:
            self.notifier.status(self._status_line())
            self._next_status = now + STATUS_EVERY_SECONDS

    def _status_line(self) -> str:
        counts = {
            row["state"]: row["count"]
            for row in self.store.query(
                "SELECT state, count(*) AS count FROM files "
                "WHERE state NOT IN ('filed', 'gone') GROUP BY state"
            )
        }
        waiting = counts.get("detected", 0) + counts.get("ready", 0)
        working = counts.get("batched", 0) + counts.get("uploaded", 0)
        return (
            f"{len(self.folders)} folders, {waiting} files waiting, "
            f"{working} in jobs, {len(self._in_flight)} batches active"
        )

    def _reread_key(self) -> None:
        """Take the key again from its source; if it changed, wake waiting work.

        Runs every few seconds and after each 401/403, so a fixed key file is
        used at once, without a restart, and work paused on a refused key is
        tried again right away.
        """
        try:
            key = self.config.api.key_source.read()
        except OSError as exc:
            if not self._key_unreadable:
                self.log.error("api_key_unreadable", error=exc.strerror or str(exc))
            self._key_unreadable = True
            return
        self._key_unreadable = False
        if key != self._api_key:
            register_secret(key.reveal())
            self._api_key = key
            self.client.set_api_key(key)
            self.store.wake_batches()
            self.log.info("api_key_reloaded")

    def _reload(self) -> None:
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            self.log.error("config_reload_failed", error=str(exc))
            return
        if new.state_db != self.config.state_db:
            self.log.warning(
                "config_reload_ignores_state_db", state_db=str(new.state_db)
            )
            new = replace(new, state_db=self.config.state_db)

        for folder in new.folders:
            if self.folders.get(folder.name) != folder:
                self.folders[folder.name] = folder
                self.intakes[folder.name] = Intake(
                    folder, self.store, self._report_health
                )
                watcher = self.watchers.pop(folder.name, None)
                if watcher is not None:
                    watcher.stop()
        kept = {folder.name for folder in new.folders}
        for name in [name for name in self.intakes if name not in kept]:
            # Unfinished batches of a removed folder still finish; nothing new
            # is taken from it.
            del self.intakes[name]
            watcher = self.watchers.pop(name, None)
            if watcher is not None:
                watcher.stop()
            self._release_folder(name)

        network = ("base_url", "connect_timeout_seconds", "read_timeout_seconds")
        if any(getattr(new.api, k) != getattr(self.config.api, k) for k in network):
            self.log.warning(
                "config_reload_partial",
                detail="base_url and timeouts apply at the next start; "
                "polling intervals, folders and the key apply now",
            )
        self.config = new
        self.runner.api = new.api
        self._reread_key()
        self.log.info("config_reloaded", folders=len(kept))

    # -- moving work along ---------------------------------------------------

    def _file_rejected(self) -> None:
        """File rejected files (no batch); one that cannot be moved waits."""
        now = time.monotonic()
        for row in self.store.files_in_state("rejected", "moving"):
            if row["batch_id"] is not None:
                continue  # Batched files are filed by their batch.
            if not self._known_folder(row["folder"]):
                continue
            retry_at, failures = self._filing_retry.get(row["id"], (0.0, 0))
            if now < retry_at:
                continue
            try:
                self.filer.file(
                    row, outcome="failed", reason=row["reason"], message=row["message"]
                )
            except (OSError, FilingError) as exc:
                delay = backoff_seconds(failures, base=5.0)
                self._filing_retry[row["id"]] = (now + delay, failures + 1)
                if failures == 0:
                    self.log.error(
                        "filing_failed", file=row["rel_path"], error=str(exc)
                    )
            else:
                self._filing_retry.pop(row["id"], None)

    def _close_batches(self) -> None:
        now = time.time()
        for name, folder in self._active_folders():
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
            if not self._known_folder(batch["folder"]):
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


def _available(folder: FolderConfig) -> bool:
    if not folder.path.is_dir():
        return False
    return not (folder.expect_mount and looks_unmounted(folder.path))


def folder_paths(config: Config) -> list[Path]:
    """Every directory the daemon writes to, for service managers' sandboxes."""
    paths: list[Path] = [config.state_db.parent]
    for folder in config.folders:
        paths += [folder.path, folder.done_dir, folder.failed_dir]
    return paths
