"""Service-manager files for one installation: a systemd unit, a launchd plist.

An :class:`Installation` says what a service manager must know: the command
that runs glossi-watch, the configuration, the unprivileged account, and the
directories the daemon writes to and reads from. The ``render_*`` functions
turn it into file text and touch nothing;
:mod:`glossi_watch.service_install` (the ``install-service`` command) writes
the files and says what to run next.

The systemd unit is hardened: the file system is read-only except the
folders the configuration names and the state directory, and the daemon has
no capabilities. Two settings depend on where things live: ``ProtectHome``
becomes ``read-only`` (not hidden) when anything it needs is under a home
directory, and ``PrivateTmp`` is off when anything is under ``/tmp``. A
template unit (``glossi-watch@.service``) runs one daemon per
``/etc/glossi-watch/NAME.toml``; each instance's folders come in a drop-in.
"""

from __future__ import annotations

import os
import plistlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CONFIG_DIR = Path("/etc/glossi-watch")
DEFAULT_CONFIG = CONFIG_DIR / "config.toml"
DEFAULT_KEY_FILE = CONFIG_DIR / "api-key"
DEFAULT_USER = "glossi-watch"
STATE_ROOT = Path("/var/lib/glossi-watch")
SYSTEMD_DIR = Path("/etc/systemd/system")
LAUNCHD_DIR = Path("/Library/LaunchDaemons")
LAUNCHD_LABEL = "app.glossi.watch"
LAUNCHD_LOG_DIR = Path("/Library/Logs/glossi-watch")
HOME_PREFIXES = (Path("/home"), Path("/root"), Path("/run/user"))
TEMP_PREFIXES = (Path("/tmp"), Path("/var/tmp"))


@dataclass(frozen=True)
class Installation:
    """One daemon as a service manager sees it.

    ``command`` runs glossi-watch (its script, or ``python -m glossi_watch``);
    ``write_paths`` are every directory it writes to; ``read_paths`` those it
    only reads (its runtime, package, configuration and key file). All paths
    are absolute. ``instance`` names a template instance, or is None.
    """

    command: tuple[str, ...]
    config_path: Path
    key_file: Path
    user: str
    group: str
    write_paths: tuple[Path, ...]
    read_paths: tuple[Path, ...]
    instance: str | None = None

    @property
    def state_directory(self) -> Path:
        return STATE_ROOT / self.instance if self.instance else STATE_ROOT

    @property
    def unit_name(self) -> str:
        if self.instance:
            return f"glossi-watch@{self.instance}.service"
        return "glossi-watch.service"

    @property
    def launchd_label(self) -> str:
        suffix = f".{self.instance}" if self.instance else ""
        return LAUNCHD_LABEL + suffix

    def sandbox_write_paths(self) -> list[Path]:
        """The outermost write paths, less what ``StateDirectory=`` provides."""
        paths = [Path(os.path.normpath(path)) for path in self.write_paths]
        paths = [
            p for p in dict.fromkeys(paths) if not _within(p, self.state_directory)
        ]
        return [p for p in paths if not any(_within(p, o) and p != o for o in paths)]

    def first_under(self, prefixes: tuple[Path, ...]) -> Path | None:
        """The first path it needs that lies under one of ``prefixes``."""
        for path in (*self.read_paths, *self.write_paths):
            if _under_any(path, prefixes):
                return path
        return None


def current_command() -> tuple[str, ...]:
    """How this glossi-watch is started: its script beside Python, or ``-m``."""
    python = Path(sys.executable).absolute()  # Not resolved: that leaves a venv.
    script = python.parent / "glossi-watch"
    if script.is_file() and os.access(script, os.X_OK):
        return (os.path.realpath(script),)
    return (str(python), "-m", "glossi_watch")


def default_key_file(instance: str | None) -> Path:
    """Where the key of an installation (or template instance) is by default."""
    return CONFIG_DIR / f"{instance}.api-key" if instance else DEFAULT_KEY_FILE


def default_installation() -> Installation:
    """The layout of ``config.example.toml``, as the checked-in files show it."""
    command = ("/opt/glossi-watch/.venv/bin/glossi-watch",)
    return Installation(
        command=command,
        config_path=DEFAULT_CONFIG,
        key_file=DEFAULT_KEY_FILE,
        user=DEFAULT_USER,
        group=DEFAULT_USER,
        write_paths=(STATE_ROOT, Path("/srv/hotfolder/models")),
        read_paths=(Path(command[0]), DEFAULT_CONFIG, DEFAULT_KEY_FILE),
    )


def render_systemd_unit(installation: Installation) -> str:
    """``glossi-watch.service`` for ``installation`` (which has no instance)."""
    config = _unit_word(str(installation.config_path))
    lines = [
        "# glossi-watch as a systemd service, written by glossi-watch install-service.",
        "# Install it in /etc/systemd/system/, then:",
        "#   systemctl daemon-reload && systemctl enable --now glossi-watch.service",
        "[Unit]",
        "Description=glossi-watch hot-folder uploader for the Glossi API",
        *_unit_head(),
        *_keyed("RequiresMountsFor", installation.sandbox_write_paths()),
        *_start_limits(),
        "",
        "[Service]",
        *_service_body(
            exec_start=f"{_exec_words(installation.command)} run --config {config}",
            user=installation.user,
            group=installation.group,
            key_file=_escaped(installation.key_file),
            state_directory="glossi-watch",
            writable=_keyed("ReadWritePaths", installation.sandbox_write_paths()),
        ),
        *_place_dependent(installation),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def render_systemd_template(command: tuple[str, ...]) -> str:
    """``glossi-watch@.service``: one daemon per ``/etc/glossi-watch/%i.toml``."""
    lines = [
        "# glossi-watch, one service per configuration: glossi-watch@NAME.service runs",
        "# /etc/glossi-watch/NAME.toml with the key in /etc/glossi-watch/NAME.api-key.",
        "# Each instance's folders come in a drop-in that install-service writes:",
        "#   glossi-watch install-service --config /etc/glossi-watch/NAME.toml "
        "--instance NAME",
        "[Unit]",
        "Description=glossi-watch hot-folder uploader for the Glossi API (%i)",
        *_unit_head(),
        *_start_limits(),
        "",
        "[Service]",
        *_service_body(
            exec_start=f"{_exec_words(command)} run --config {CONFIG_DIR}/%i.toml",
            user=DEFAULT_USER,
            group=DEFAULT_USER,
            key_file=f"{CONFIG_DIR}/%i.api-key",
            state_directory="glossi-watch/%i",
            writable=["# ReadWritePaths= for the folders: in the instance's drop-in."],
        ),
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def render_instance_dropin(installation: Installation) -> str:
    """The drop-in that gives one template instance its account and folders."""
    lines = [
        f"# {installation.unit_name}: {installation.config_path}",
        "# Written by glossi-watch install-service.",
        "[Unit]",
        *_keyed("RequiresMountsFor", installation.sandbox_write_paths()),
        "",
        "[Service]",
        f"User={installation.user}",
        f"Group={installation.group}",
    ]
    if installation.config_path != CONFIG_DIR / f"{installation.instance}.toml":
        config = _unit_word(str(installation.config_path))
        command = _exec_words(installation.command)
        lines += ["ExecStart=", f"ExecStart={command} run --config {config}"]
    if installation.key_file != default_key_file(installation.instance):
        key = _escaped(installation.key_file)
        lines += ["LoadCredential=", f"LoadCredential=glossi-api-key:{key}"]
    lines += _keyed("ReadWritePaths", installation.sandbox_write_paths())
    lines += _place_dependent(installation)
    return "\n".join(lines) + "\n"


def render_launchd_plist(installation: Installation) -> bytes:
    """A launchd daemon plist (for ``/Library/LaunchDaemons``) as XML bytes."""
    log_name = installation.unit_name.removesuffix(".service") + ".log"
    log = str(LAUNCHD_LOG_DIR / log_name)
    document = {
        "Label": installation.launchd_label,
        "ProgramArguments": [
            *installation.command,
            "run",
            "--config",
            str(installation.config_path),
        ],
        "UserName": installation.user,
        "GroupName": installation.group,
        "RunAtLoad": True,
        # Restarted when it fails, not after a clean stop.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        "ExitTimeOut": 30,
        "ProcessType": "Standard",
        "Umask": 0o002,
        "WorkingDirectory": "/",
        "StandardOutPath": log,
        "StandardErrorPath": log,
        "EnvironmentVariables": {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "PYTHONUNBUFFERED": "1",
        },
    }
    return plistlib.dumps(document, sort_keys=False)


def _unit_head() -> list[str]:
    return [
        "Wants=network-online.target",
        "After=network-online.target remote-fs.target",
    ]


def _start_limits() -> list[str]:
    return ["StartLimitIntervalSec=300", "StartLimitBurst=10"]


def _service_body(
    *,
    exec_start: str,
    user: str,
    group: str,
    key_file: str,
    state_directory: str,
    writable: list[str],
) -> list[str]:
    return [
        "# The daemon says READY=1 once it serves, and WATCHDOG=1 while it does.",
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=60",
        f"ExecStart={exec_start}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        f"User={user}",
        f"Group={group}",
        "# Group-writable files, for folders an artists' group shares.",
        "UMask=0002",
        "# Bytecode caches cannot be written here; Python need not try.",
        "Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
        "Restart=on-failure",
        "RestartSec=5",
        "# A bad configuration (exit status 2) does not fix itself.",
        "RestartPreventExitStatus=2",
        "TimeoutStopSec=30",
        f"LoadCredential=glossi-api-key:{key_file}",
        f"StateDirectory={state_directory}",
        "",
        "# Sandbox: no privileges, the system read-only but for ReadWritePaths=.",
        "NoNewPrivileges=yes",
        "# One capability: read leases on artists' files, to tell whether a",
        "# writer on this machine still has a file open (see intake.py).",
        "CapabilityBoundingSet=CAP_LEASE",
        "AmbientCapabilities=CAP_LEASE",
        "ProtectSystem=strict",
        *writable,
        "PrivateDevices=yes",
        "PrivateMounts=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "RemoveIPC=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
    ]


def _place_dependent(installation: Installation) -> list[str]:
    lines = []
    home = installation.first_under(HOME_PREFIXES)
    if home is not None:
        lines += [
            f"# {home} is in a home directory: homes are read-only",
            "# here instead of hidden, and ReadWritePaths= still opens the folders.",
            "ProtectHome=read-only",
        ]
    else:
        lines.append("ProtectHome=yes")
    temporary = installation.first_under(TEMP_PREFIXES)
    if temporary is not None:
        lines += [
            f"# {temporary} is in /tmp or /var/tmp, which PrivateTmp=yes hides.",
            "PrivateTmp=no",
        ]
    else:
        lines.append("PrivateTmp=yes")
    return lines


def _keyed(key: str, paths: Iterable[Path]) -> list[str]:
    return [f"{key}={_unit_word(str(path))}" for path in paths]


def _escaped(path: Path) -> str:
    """``path`` with systemd's specifiers escaped (``%`` becomes ``%%``)."""
    return str(path).replace("%", "%%")


def _unit_word(text: str) -> str:
    """``text`` as one word of a unit file setting, specifiers escaped."""
    text = text.replace("%", "%%")
    if any(char.isspace() or char in "\"'\\;" for char in text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _exec_words(command: tuple[str, ...]) -> str:
    # ExecStart= also expands $VARIABLES; $$ is a literal dollar.
    return " ".join(_unit_word(word).replace("$", "$$") for word in command)


def _within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _under_any(path: Path, prefixes: tuple[Path, ...]) -> bool:
    forms = (Path(os.path.normpath(path)), Path(os.path.realpath(path)))
    return any(_within(form, prefix) for form in forms for prefix in prefixes)
