"""The one exception tree of glossi-watch.

::

    GlossiWatchError
    ├── ConfigError            the configuration cannot be used; start-up stops
    ├── StoreError             the state database cannot be opened or written
    ├── FilingError            a file or sidecar cannot be filed safely
    ├── ApiError               the Glossi API answered something we cannot use
    │   ├── TransientApiError  worth trying again later (network, 5xx, 429)
    │   ├── AuthError          the key was refused (401/403 on an API route)
    │   └── PermanentApiError  the request itself was refused (other 4xx)
    └── UploadError            a PUT to a presigned URL failed
        ├── TransientUploadError
        ├── ExpiredUrlError    the presigned URL has expired; a new job is needed
        └── PermanentUploadError

Errors from httpx, sqlite3 and the operating system are caught where they
enter and re-raised as one of these with ``from exc``.
"""

from __future__ import annotations

from pathlib import Path


class GlossiWatchError(Exception):
    """Base class of every error that glossi-watch raises on purpose."""


class ConfigError(GlossiWatchError):
    """The configuration file is missing, unreadable or invalid."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path = Path(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + problem)


class StoreError(GlossiWatchError):
    """The state database could not be opened, migrated or written."""


class FilingError(GlossiWatchError):
    """A file could not be moved, or a folder or sidecar written, safely.

    Raised instead of overwriting or deleting anything: the artist's file is
    still at its source, at its destination, or (when the two differ) at both.
    ``path`` is the file or folder the problem is about.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ApiError(GlossiWatchError):
    """The Glossi API answered with something other than success."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str = "",
        retry_after: float | None = None,
        maybe_processed: bool = True,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after
        # False only when the request surely never reached the API (no
        # connection, or a 429): then it cannot have created anything.
        self.maybe_processed = maybe_processed
        super().__init__(message)


class TransientApiError(ApiError):
    """A network failure, timeout, 5xx or 429: the same call may work later."""


class AuthError(ApiError):
    """The API refused the key (401 or 403 on an API route)."""


class PermanentApiError(ApiError):
    """The API refused the request itself; sending it again will not help."""


class UploadError(GlossiWatchError):
    """A PUT of a file to its presigned URL did not succeed."""

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str = ""
    ) -> None:
        self.status_code = status_code
        self.code = code
        super().__init__(message)


class TransientUploadError(UploadError):
    """The storage did not take the file this time; a new attempt may work."""


class ExpiredUrlError(UploadError):
    """The presigned URL has expired; the file needs a new job and URL."""


class PermanentUploadError(UploadError):
    """The storage refused the file in a way a retry will not change."""
