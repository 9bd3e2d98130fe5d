"""The configuration file: one validated object for the whole daemon.

The file is TOML with an ``[api]`` table, top-level daemon settings and one
``[[folders]]`` table per hot folder; ``config.example.toml`` documents every
key. :func:`load_config` either returns a complete :class:`Config` or raises
:class:`ConfigError` naming the file, the key and what is wrong, so the daemon
never starts on a half-understood configuration. Unknown keys are errors: a
misspelt ``debounce_secnds`` would otherwise be silently ignored.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from glossi_watch.errors import ConfigError

DEFAULT_BASE_URL = "https://api.glossi.app/api/v1"
API_KEY_ENV = "GLOSSI_API_KEY"
CREDENTIAL_NAME = "glossi-api-key"
ONE_GB = 1024**3
SINGLE_PUT_LIMIT = 5 * ONE_GB


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class KeySource:
    """Where the API key comes from, so it can be read again after a refusal.

    Order: a systemd credential (``$CREDENTIALS_DIRECTORY/glossi-api-key``),
    the ``GLOSSI_API_KEY`` environment variable, ``api_key_file``, then an
    ``api_key`` written in the configuration itself.
    """

    key_file: Path | None = None
    inline_key: Secret | None = None

    def read(self) -> Secret:
        """The key now; OSError when it is configured but cannot be read."""
        try:
            return self._read()
        except UnicodeDecodeError as exc:
            raise OSError(f"the API key file is not UTF-8 text: {exc}") from exc

    def _read(self) -> Secret:
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if credentials:
            candidate = Path(credentials) / CREDENTIAL_NAME
            if candidate.is_file():
                return Secret(candidate.read_text().strip())
        from_env = os.environ.get(API_KEY_ENV, "").strip()
        if from_env:
            return Secret(from_env)
        if self.key_file is not None:
            return Secret(self.key_file.read_text().strip())
        if self.inline_key is not None:
            return self.inline_key
        raise FileNotFoundError("no API key is configured")  # An OSError too.


@dataclass(frozen=True)
class ApiConfig:
    base_url: str
    key_source: KeySource
    poll_interval_seconds: float = 5.0
    max_poll_interval_seconds: float = 60.0
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0


@dataclass(frozen=True)
class FolderConfig:
    """One hot folder and what its jobs ask of the API."""

    path: Path
    done_dir: Path
    failed_dir: Path
    template_id: str | None = None
    create_projects: bool = True
    render_settings: Mapping[str, Any] | None = None
    webhook_url: str | None = None
    debounce_seconds: float = 10.0
    settle_seconds: float = 2.0
    max_batch_files: int = 50
    max_batch_wait_seconds: float = 300.0
    max_file_bytes: int = ONE_GB
    incomplete_after_seconds: float = 3600.0
    watch_mode: str = "auto"
    poll_interval_seconds: float = 5.0
    subfolders: str = "ignore"
    include: tuple[str, ...] = ("*.glb",)
    exclude: tuple[str, ...] = ()
    expect_mount: bool = False
    job_timeout_seconds: float = 6 * 3600.0

    @property
    def name(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Config:
    path: Path
    api: ApiConfig
    state_db: Path
    folders: tuple[FolderConfig, ...]
    scan_interval_seconds: float = 60.0
    log_level: str = "info"


_TOP_KEYS = {"state_db", "scan_interval_seconds", "log_level", "api", "folders"}
_API_KEYS = {
    "base_url",
    "api_key_file",
    "api_key",
    "poll_interval_seconds",
    "max_poll_interval_seconds",
    "connect_timeout_seconds",
    "read_timeout_seconds",
}
_FOLDER_KEYS = {
    "path",
    "template_id",
    "create_projects",
    "render_settings",
    "webhook_url",
    "debounce_seconds",
    "settle_seconds",
    "max_batch_files",
    "max_batch_wait_seconds",
    "max_file_bytes",
    "done_dir",
    "failed_dir",
    "incomplete_after_seconds",
    "watch_mode",
    "poll_interval_seconds",
    "subfolders",
    "include",
    "exclude",
    "expect_mount",
    "job_timeout_seconds",
}
_WATCH_MODES = ("auto", "native", "polling")
_SUBFOLDER_POLICIES = ("ignore", "recursive")
_LOG_LEVELS = {"debug", "info", "warning", "error"}


class _Reader:
    """Typed access to one TOML table, raising ConfigError on bad values."""

    def __init__(self, config_path: Path, table: Mapping[str, Any], prefix: str):
        self.config_path = config_path
        self.table = table
        self.prefix = prefix

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.config_path, self.prefix + key, problem)

    def reject_unknown(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                valid = ", ".join(sorted(allowed))
                raise self.fail(key, f"unknown key (valid keys: {valid})")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.table.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail(key, "must be a non-empty string")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def number(
        self, key: str, default: float, *, minimum: float, maximum: float
    ) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, not {value!r}")
        if not minimum <= value <= maximum:
            raise self.fail(key, f"must be between {minimum} and {maximum}")
        return float(value)

    def whole(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, not {value!r}")
        if not minimum <= value <= maximum:
            raise self.fail(key, f"must be between {minimum} and {maximum}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default) or default
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def patterns(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.table.get(key, list(default))
        if not isinstance(value, list) or not all(
            isinstance(item, str) and item for item in value
        ):
            raise self.fail(key, 'must be a list of glob patterns, like ["*.glb"]')
        return tuple(value)

    def path(self, key: str, base: Path, default: str | None = None) -> Path:
        value = self.text(key, default)
        if value is None:
            raise self.fail(key, "is required")
        return (base / Path(value).expanduser()).absolute()


def load_config(path: Path | str, *, require_key: bool = True) -> Config:
    """Read and validate the configuration at ``path``.

    ``require_key=False`` accepts a configuration whose key is not readable
    here (``install-service`` runs before the systemd credential exists).
    """
    config_path = Path(path).absolute()
    try:
        raw = config_path.read_bytes()
    except OSError as exc:
        raise ConfigError(config_path, "", f"cannot read: {exc.strerror}") from exc
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(config_path, "", f"not valid TOML: {exc}") from exc
    return parse_config(document, config_path, require_key=require_key)


def parse_config(
    document: Mapping[str, Any], config_path: Path, *, require_key: bool = True
) -> Config:
    """Validate an already-parsed TOML ``document`` read from ``config_path``."""
    top = _Reader(config_path, document, "")
    top.reject_unknown(_TOP_KEYS)
    base = config_path.parent

    api_table = document.get("api", {})
    if not isinstance(api_table, dict):
        raise top.fail("api", "must be a table ([api])")
    api = _parse_api(_Reader(config_path, api_table, "api."), base, require_key)

    folders_list = document.get("folders")
    if not isinstance(folders_list, list) or not folders_list:
        raise top.fail("folders", "at least one [[folders]] table is required")
    folders = tuple(
        _parse_folder(config_path, index, table, base)
        for index, table in enumerate(folders_list)
    )
    _check_folders_apart(config_path, folders)

    log_level = (top.text("log_level", "info") or "info").lower()
    if log_level not in _LOG_LEVELS:
        raise top.fail("log_level", f"must be one of {sorted(_LOG_LEVELS)}")

    return Config(
        path=config_path,
        api=api,
        state_db=top.path("state_db", base, "glossi-watch.db"),
        folders=folders,
        scan_interval_seconds=top.number(
            "scan_interval_seconds", 60.0, minimum=1, maximum=86400
        ),
        log_level=log_level,
    )


def _parse_api(reader: _Reader, base: Path, require_key: bool) -> ApiConfig:
    reader.reject_unknown(_API_KEYS)
    base_url = (reader.text("base_url", DEFAULT_BASE_URL) or "").rstrip("/")
    _check_base_url(reader, base_url)

    key_file = None
    if "api_key_file" in reader.table:
        key_file = reader.path("api_key_file", base)
        if require_key or key_file.exists():
            _check_private(reader, "api_key_file", key_file)
    inline = reader.text("api_key")
    if inline is not None:
        _check_private(reader, "api_key", reader.config_path)
    source = KeySource(key_file, Secret(inline) if inline else None)
    try:
        if require_key:
            source.read()
    except FileNotFoundError as exc:
        problem = f"no API key: set {API_KEY_ENV} or api_key_file ({exc})"
        raise reader.fail("api_key_file", problem) from exc
    except OSError as exc:
        raise reader.fail(
            "api_key_file", f"cannot read: {exc.strerror or exc}"
        ) from exc

    return ApiConfig(
        base_url=base_url,
        key_source=source,
        poll_interval_seconds=reader.number(
            "poll_interval_seconds", 5.0, minimum=0.05, maximum=3600
        ),
        max_poll_interval_seconds=reader.number(
            "max_poll_interval_seconds", 60.0, minimum=0.05, maximum=3600
        ),
        connect_timeout_seconds=reader.number(
            "connect_timeout_seconds", 10.0, minimum=0.1, maximum=600
        ),
        read_timeout_seconds=reader.number(
            "read_timeout_seconds", 60.0, minimum=0.1, maximum=3600
        ),
    )


def _check_base_url(reader: _Reader, base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.fail("base_url", f"must be an http(s) URL, not {base_url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # The key travels in a header: plain http is allowed only on this machine.
        raise reader.fail("base_url", "must use https unless the host is loopback")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_private(reader: _Reader, key: str, path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise reader.fail(key, f"cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise reader.fail(
            key,
            f"{path} holds the API key but has mode {mode:04o}; "
            f"allow only its owner (chmod 600 {path})",
        )


def _parse_folder(
    config_path: Path, index: int, table: Any, base: Path
) -> FolderConfig:
    reader = _Reader(config_path, table if isinstance(table, dict) else {}, "")
    reader.prefix = f"folders[{index}]."
    if not isinstance(table, dict):
        raise reader.fail("", "must be a table ([[folders]])")
    reader.reject_unknown(_FOLDER_KEYS)

    path = reader.path("path", base)
    render_settings = table.get("render_settings")
    if render_settings is not None and not isinstance(render_settings, dict):
        raise reader.fail("render_settings", "must be a table")
    template_id = reader.text("template_id")
    if _asks_for_rendering(render_settings) and template_id is None:
        raise reader.fail(
            "template_id", "is required when render_settings asks for renders"
        )
    webhook_url = reader.text("webhook_url")
    if webhook_url is not None and urlsplit(webhook_url).scheme not in (
        "http",
        "https",
    ):
        raise reader.fail("webhook_url", "must be an http(s) URL")

    folder = FolderConfig(
        path=path,
        done_dir=reader.path("done_dir", path, "done"),
        failed_dir=reader.path("failed_dir", path, "failed"),
        template_id=template_id,
        create_projects=reader.flag("create_projects", True),
        render_settings=render_settings,
        webhook_url=webhook_url,
        debounce_seconds=reader.number(
            "debounce_seconds", 10.0, minimum=0, maximum=3600
        ),
        settle_seconds=reader.number("settle_seconds", 2.0, minimum=0, maximum=3600),
        max_batch_files=reader.whole("max_batch_files", 50, minimum=1, maximum=500),
        max_batch_wait_seconds=reader.number(
            "max_batch_wait_seconds", 300.0, minimum=0, maximum=86400
        ),
        max_file_bytes=reader.whole(
            "max_file_bytes", ONE_GB, minimum=1, maximum=SINGLE_PUT_LIMIT
        ),
        incomplete_after_seconds=reader.number(
            "incomplete_after_seconds", 3600.0, minimum=1, maximum=7 * 86400
        ),
        watch_mode=reader.choice("watch_mode", "auto", _WATCH_MODES),
        poll_interval_seconds=reader.number(
            "poll_interval_seconds", 5.0, minimum=0.1, maximum=3600
        ),
        subfolders=reader.choice("subfolders", "ignore", _SUBFOLDER_POLICIES),
        include=reader.patterns("include", ("*.glb",)),
        exclude=reader.patterns("exclude", ()),
        expect_mount=reader.flag("expect_mount", False),
        job_timeout_seconds=reader.number(
            "job_timeout_seconds", 6 * 3600.0, minimum=1, maximum=30 * 86400
        ),
    )
    for key, directory in (
        ("done_dir", folder.done_dir),
        ("failed_dir", folder.failed_dir),
    ):
        if directory == folder.path:
            raise reader.fail(key, "must not be the watched folder itself")
    if folder.done_dir == folder.failed_dir:
        raise reader.fail("failed_dir", "must differ from done_dir")
    return folder


def _asks_for_rendering(render_settings: Mapping[str, Any] | None) -> bool:
    if not render_settings:
        return False
    return bool(
        render_settings.get("renderBookmarks") or render_settings.get("renderShots")
    )


def _check_folders_apart(config_path: Path, folders: tuple[FolderConfig, ...]) -> None:
    """No folder, done_dir or failed_dir may lie inside another hot folder.

    Nested folders would each take the same file (two jobs), and a done_dir
    inside another folder would feed filed models back into it.
    """
    for index in reversed(range(len(folders))):  # Name the later of a pair.
        folder = folders[index]
        for other_index, other in enumerate(folders):
            if index == other_index:
                continue
            places = {
                "path": folder.path,
                "done_dir": folder.done_dir,
                "failed_dir": folder.failed_dir,
            }
            for key, place in places.items():
                if place == other.path or other.path in place.parents:
                    raise ConfigError(
                        config_path,
                        f"folders[{index}].{key}",
                        f"{place} lies inside folders[{other_index}] "
                        f"({other.path}); hot folders must not overlap",
                    )
