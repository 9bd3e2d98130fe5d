"""The ``install-service`` command: write this installation's service files.

It loads the configuration (the folders decide the sandbox), renders the
files with :mod:`glossi_watch.service_files`, writes them (or prints them),
and then lists what is still to do on this machine, in order: the account,
the key, missing folders, a configuration the account cannot read, and the
commands that enable the service. It never runs those commands itself.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import glossi_watch
from glossi_watch.config import Config, load_config
from glossi_watch.daemon import folder_paths
from glossi_watch.errors import GlossiWatchError
from glossi_watch.service_files import (
    LAUNCHD_DIR,
    LAUNCHD_LOG_DIR,
    SYSTEMD_DIR,
    Installation,
    current_command,
    default_key_file,
    render_instance_dropin,
    render_launchd_plist,
    render_systemd_template,
    render_systemd_unit,
)


@dataclass(frozen=True)
class ServiceRequest:
    """What ``install-service`` was asked for, from the command line."""

    config_path: Path
    user: str
    launchd: bool
    print_only: bool
    output_dir: Path | None
    instance: str | None


def install_service(request: ServiceRequest) -> int:
    """Write (or print) the service files; return the exit status.

    Raises ConfigError for a configuration that does not load, and
    GlossiWatchError when a file cannot be written or the account is root.
    """
    if request.instance is not None:
        _check_instance_name(request.instance)
    account = _account(request.user)
    config = load_config(request.config_path, require_key=False)
    installation = installation_for(
        config, user=request.user, group=account.group, instance=request.instance
    )
    default_dir = LAUNCHD_DIR if request.launchd else SYSTEMD_DIR
    directory = request.output_dir or default_dir
    files = _rendered(installation, directory, launchd=request.launchd)

    if request.print_only:
        for path, content in files:
            if len(files) > 1:
                sys.stdout.write(f"# {default_dir / path.relative_to(directory)}\n")
            sys.stdout.write(content.decode())
        sys.stdout.flush()
        notes = sys.stderr
    else:
        for path, content in files:
            _write(path, content)
            print(f"wrote {path}")
        notes = sys.stdout

    steps = _next_steps(
        installation,
        account,
        files,
        directory,
        launchd=request.launchd,
        inline_key=config.api.key_source.inline_key is not None,
    )
    print("\nThen, as root:", file=notes)
    for number, step in enumerate(steps, start=1):
        print(f"  {number}. {step}", file=notes)
    return 0


@dataclass(frozen=True)
class _Account:
    name: str
    group: str
    uid: int | None
    gid: int | None


def installation_for(
    config: Config,
    *,
    user: str,
    group: str,
    instance: str | None = None,
    command: tuple[str, ...] | None = None,
) -> Installation:
    """The installation that runs ``config`` with this Python as ``user``."""
    command = command or current_command()
    key_file = config.api.key_source.key_file
    runtime = {Path(sys.base_prefix), Path(glossi_watch.__file__).parent}
    return Installation(
        command=command,
        config_path=config.path,
        key_file=key_file or default_key_file(instance),
        user=user,
        group=group,
        write_paths=tuple(folder_paths(config)),
        read_paths=(
            Path(command[0]),
            *sorted(runtime),
            config.path,
            *([key_file] if key_file else []),
        ),
        instance=instance,
    )


def _check_instance_name(name: str) -> None:
    if not name or not all(char.isalnum() or char in "_.-" for char in name):
        raise GlossiWatchError(
            f"{name!r} is not an instance name: use letters, digits, '_', '.', '-'"
        )


def _account(name: str) -> _Account:
    if name == "nobody":
        raise GlossiWatchError(
            "the service needs an account of its own, not nobody (which other "
            "services share); the default is glossi-watch"
        )
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if name == "root":
            raise GlossiWatchError("the service must not run as root") from None
        return _Account(name, name, None, None)
    if entry.pw_uid == 0:
        raise GlossiWatchError(f"the service must not run as root (user {name})")
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    return _Account(name, group, entry.pw_uid, entry.pw_gid)


def _rendered(
    installation: Installation, directory: Path, *, launchd: bool
) -> list[tuple[Path, bytes]]:
    if launchd:
        plist = directory / f"{installation.launchd_label}.plist"
        return [(plist, render_launchd_plist(installation))]
    if installation.instance is None:
        unit = directory / installation.unit_name
        return [(unit, render_systemd_unit(installation).encode())]
    template = render_systemd_template(installation.command)
    dropin = directory / f"{installation.unit_name}.d" / "glossi-watch.conf"
    return [
        (directory / "glossi-watch@.service", template.encode()),
        (dropin, render_instance_dropin(installation).encode()),
    ]


def _write(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content`` (mode 0644) in one rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=".glossi-watch-", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(content)
            os.chmod(partial, 0o644)
            os.replace(partial, path)
        except BaseException:
            os.unlink(partial)
            raise
    except OSError as exc:
        raise GlossiWatchError(
            f"cannot write {path}: {exc.strerror}; run it as root, or use "
            "--print or --output DIR"
        ) from exc


def _next_steps(
    installation: Installation,
    account: _Account,
    files: list[tuple[Path, bytes]],
    directory: Path,
    *,
    launchd: bool,
    inline_key: bool,
) -> list[str]:
    user, group = installation.user, installation.group
    config = shlex.quote(str(installation.config_path))
    steps = []
    if account.uid is None and launchd:
        steps.append(f"create the account {user} (System Settings, or dscl)")
    elif account.uid is None:
        steps.append(
            "create the account: useradd --system --user-group --no-create-home "
            f"--shell /usr/sbin/nologin {user}"
        )
    if not installation.key_file.exists():
        steps.append(f"put the API key in {installation.key_file} (chmod 600)")
    for path in map(str, installation.sandbox_write_paths()):
        if not os.path.exists(path):
            quoted = shlex.quote(path)
            steps.append(f"mkdir -p {quoted} && chown {user}:{group} {quoted}")
    if not _readable_by(installation.config_path, account):
        # A key written in the configuration keeps it owner-only (load_config).
        steps.append(
            f"chown {user} {config}"
            if inline_key
            else f"chgrp {group} {config} && chmod 640 {config}"
        )
    command = " ".join(map(shlex.quote, installation.command))
    steps.append(f"sudo -u {user} {command} check --config {config}")

    written = " ".join(_top_entries(files, directory))
    if launchd:
        plist = LAUNCHD_DIR / files[0][0].name
        if directory != LAUNCHD_DIR:
            steps.append(f"cp {written} {LAUNCHD_DIR}/")
        steps.append(f"mkdir -p {LAUNCHD_LOG_DIR} && chown {user} {LAUNCHD_LOG_DIR}")
        steps.append(f"launchctl bootstrap system {plist}")
        steps.append(f"launchctl print system/{installation.launchd_label}")
        return steps

    if directory != SYSTEMD_DIR:
        steps.append(f"cp -r {written} {SYSTEMD_DIR}/")
    steps.append("systemctl daemon-reload")
    steps.append(f"systemctl enable --now {installation.unit_name}")
    steps.append(f"journalctl -u {installation.unit_name} -f")
    return steps


def _top_entries(files: list[tuple[Path, bytes]], directory: Path) -> list[str]:
    names = dict.fromkeys(path.relative_to(directory).parts[0] for path, _ in files)
    return [shlex.quote(str(directory / name)) for name in names]


def _readable_by(path: Path, account: _Account) -> bool:
    """Whether ``account`` may read ``path`` (by its mode bits; ACLs unseen)."""
    try:
        status = path.stat()
    except OSError:
        return False
    mode = stat.S_IMODE(status.st_mode)
    if account.uid is None:  # Not created yet: only "others" may read it then.
        return bool(mode & stat.S_IROTH)
    if status.st_uid == account.uid:
        return bool(mode & stat.S_IRUSR)
    if status.st_gid == account.gid or account.name in _members(status.st_gid):
        return bool(mode & stat.S_IRGRP)
    return bool(mode & stat.S_IROTH)


def _members(gid: int) -> list[str]:
    try:
        return list(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return []
