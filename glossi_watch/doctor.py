"""The ``check`` command: is this installation safe to go live?

Each finding is one line starting with ``ok``, ``warn`` or ``FAIL``, printed
as soon as it is known. A FAIL is something that would stop the daemon or
lose work (a folder it cannot write, a key the API refuses); a warn is
something that works, but worse than it could (moves that copy, low inotify
limits). The exit status is 0 when nothing FAILs.

The checks act as the user who runs them, so run them as the service's
account. They write nothing but a probe file (``.glossi-watch-check-*``,
which the daemon ignores) that is removed at once, and they send one
``GET /jobs/<random id>`` with the key: 404 means the key was accepted. The
key itself is never printed.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import uuid
from pathlib import Path
from typing import TextIO

import httpx

from glossi_watch.api import USER_AGENT
from glossi_watch.config import (
    API_KEY_ENV,
    CREDENTIAL_NAME,
    Config,
    FolderConfig,
    load_config,
)
from glossi_watch.errors import ConfigError, StoreError
from glossi_watch.fsinfo import looks_unmounted, mount_of
from glossi_watch.logs import redact, register_secret
from glossi_watch.store import refuse_remote_location
from glossi_watch.watcher import choose_mode

INOTIFY_LIMITS = Path("/proc/sys/fs/inotify")
MIN_INOTIFY_WATCHES = 8192
MIN_INOTIFY_INSTANCES = 128
PROBE_PREFIX = ".glossi-watch-check-"
API_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class Report:
    """Findings printed one per line as they come; counts the FAILs."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.failures = 0

    def ok(self, text: str) -> None:
        self._line("ok", text)

    def warn(self, text: str) -> None:
        self._line("warn", text)

    def fail(self, text: str) -> None:
        self.failures += 1
        self._line("FAIL", text)

    def _line(self, level: str, text: str) -> None:
        print(f"{level:<5} {redact(text)}", file=self.stream, flush=True)


def run_checks(config_path: Path, *, stream: TextIO | None = None) -> int:
    """Check the installation of ``config_path``; 0 if nothing FAILs, else 1."""
    report = Report(stream or sys.stdout)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        report.fail(f"configuration: {exc}")
        return _verdict(report)
    folders = len(config.folders)
    report.ok(f"configuration {config.path} loads ({folders} folder(s))")

    if os.geteuid() == 0:
        report.warn(
            "running as root, for whom every folder is writable: run the check "
            "as the service's account to see what it can do"
        )
    for folder in config.folders:
        if not _check_folder(report, folder):
            continue  # Where done/ and failed/ go matters once it exists.
        for label, target in (("done", folder.done_dir), ("failed", folder.failed_dir)):
            _check_destination(report, folder.path, label, target)
    _check_state_db(report, config.state_db)
    _check_inotify(report)
    _check_key_source(report, config)
    _check_api(report, config)
    return _verdict(report)


def _verdict(report: Report) -> int:
    if report.failures:
        print(
            f"\n{report.failures} problem(s): fix the FAIL lines before going live.",
            file=report.stream,
        )
        return 1
    print("\nNo problems: safe to go live.", file=report.stream)
    return 0


def _check_folder(report: Report, folder: FolderConfig) -> bool:
    """Check the hot folder itself; whether it is there and usable."""
    path = folder.path
    if not path.exists():
        report.fail(f"folder {path}: does not exist")
        return False
    if not path.is_dir():
        report.fail(f"folder {path}: is not a directory")
        return False
    problem = _writable_problem(path)
    if problem:
        report.fail(f"folder {path}: {problem}")
        return False
    report.ok(f"folder {path}: exists, readable and writable")

    mount = mount_of(path)
    if folder.expect_mount and looks_unmounted(path):
        report.fail(f"folder {path}: expect_mount is set, but nothing is mounted")
        return False
    kind = "remote" if mount.is_remote else "local"
    mode, _ = choose_mode(folder)
    report.ok(
        f"folder {path}: {kind} {mount.fs_type} file system at "
        f"{mount.mount_point}; watcher mode: {mode}"
    )
    return True


def _check_destination(report: Report, folder: Path, label: str, target: Path) -> None:
    name = f"{label}/ {target}"
    if target.exists() and not target.is_dir():
        report.fail(f"{name}: is not a directory")
        return
    existing = _nearest_existing(target)
    problem = _writable_problem(existing)
    if problem:
        if existing != target:
            problem = f"cannot be created, {existing}: {problem}"
        report.fail(f"{name}: {problem}")
        return
    made = "writable" if existing == target else "will be created on first use"
    if folder.is_dir() and os.stat(existing).st_dev != os.stat(folder).st_dev:
        report.warn(
            f"{name}: {made}, but on another file system than the folder: "
            "every move will copy the file"
        )
    else:
        report.ok(f"{name}: {made}, on the folder's file system")


def _check_state_db(report: Report, state_db: Path) -> None:
    name = f"state database {state_db}"
    try:
        refuse_remote_location(state_db)
    except StoreError as exc:
        report.fail(str(exc))
        return
    directory = _nearest_existing(state_db.parent)
    problem = _writable_problem(directory)
    if problem:
        report.fail(f"{name}: {directory}: {problem}")
        return
    if state_db.exists() and not os.access(state_db, os.R_OK | os.W_OK):
        report.fail(f"{name}: exists but is not readable and writable")
        return
    mount = mount_of(directory)
    made = "exists" if state_db.exists() else "will be created"
    report.ok(f"{name}: {made}, on a local {mount.fs_type} file system")


def _check_inotify(report: Report) -> None:
    if not INOTIFY_LIMITS.is_dir():
        return  # Not Linux: the watcher uses the system's own mechanism.
    try:
        watches = int((INOTIFY_LIMITS / "max_user_watches").read_text())
        instances = int((INOTIFY_LIMITS / "max_user_instances").read_text())
    except (OSError, ValueError) as exc:
        report.warn(f"inotify limits: cannot be read ({exc})")
        return
    text = f"inotify limits: max_user_watches {watches}, max_user_instances {instances}"
    if watches < MIN_INOTIFY_WATCHES or instances < MIN_INOTIFY_INSTANCES:
        report.warn(
            f"{text}; low (want at least {MIN_INOTIFY_WATCHES} and "
            f"{MIN_INOTIFY_INSTANCES}): raise them with sysctl fs.inotify.*"
        )
    else:
        report.ok(text)


def _check_key_source(report: Report, config: Config) -> None:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    key_file = config.api.key_source.key_file
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        report.ok(f"API key: the systemd credential {CREDENTIAL_NAME}")
    elif os.environ.get(API_KEY_ENV, "").strip():
        report.ok(f"API key: from ${API_KEY_ENV}")
    elif key_file is not None:
        mode = stat.S_IMODE(key_file.stat().st_mode)
        report.ok(f"API key file {key_file}: mode {mode:04o}, its owner's only")
    else:
        mode = stat.S_IMODE(config.path.stat().st_mode)
        report.ok(f"API key: in the configuration, mode {mode:04o}")


def _check_api(report: Report, config: Config) -> None:
    base_url = config.api.base_url
    try:
        key = config.api.key_source.read().reveal()
    except OSError as exc:
        report.fail(f"API key: cannot be read: {exc}")
        return
    if not key:
        report.fail("API key: is empty")
        return
    register_secret(key)

    url = f"{base_url}/jobs/{uuid.uuid4()}"
    headers = {"User-Agent": USER_AGENT, "X-API-Key": key}
    try:
        with httpx.Client(timeout=API_TIMEOUT, follow_redirects=False) as client:
            answer = client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        report.fail(f"API {base_url}: cannot reach it: {exc or type(exc).__name__}")
        return

    status = answer.status_code
    if status == 404 or answer.is_success:
        report.ok(f"API {base_url}: the key was accepted")
    elif status in (401, 403):
        report.fail(f"API {base_url}: the key was refused (HTTP {status})")
    elif answer.is_redirect:
        where = answer.headers.get("Location", "elsewhere")
        report.fail(f"API {base_url}: redirects to {where}; check api.base_url")
    else:
        report.fail(f"API {base_url}: answered HTTP {status}; the key is unchecked")


def _writable_problem(directory: Path) -> str | None:
    """Why this user cannot create files in ``directory``, or None."""
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        return f"not readable and writable by uid {os.geteuid()}"
    try:
        handle, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=directory)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot create a file in it: {exc.strerror}"
    return None


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
