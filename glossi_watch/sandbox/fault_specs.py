"""Fault descriptions: what each kind of fault takes, and how one is checked.

A fault has a ``kind``, a ``route`` it targets, a ``count`` (how many
matching requests it affects; None: every one until it is removed) and the
options of its kind. The same checks serve ``POST /_sandbox/faults``, the
``--fault`` option and :meth:`Sandbox.add_fault`.

Kinds and their options (``seconds`` are numbers >= 0, byte counts integers):

- ``status``: answer ``status`` (400-599) with the server's error body;
  ``retry_after`` (seconds or an HTTP date) or ``retry_after_date_seconds``
  (an HTTP date that many seconds after the answer) sets ``Retry-After``;
- ``latency``: wait ``seconds``, then handle the request normally;
- ``reset``: read ``after_bytes`` of an upload's body (default 0; API
  requests read nothing), then cut the connection with a TCP reset;
- ``stall``: read ``after_bytes`` of an upload's body, do nothing for
  ``seconds``, then close the connection without answering;
- ``bandwidth``: read the body at no more than ``bytes_per_second``;
- ``html``: answer 200 with an HTML page instead of the route's answer;
- ``url_ttl``: upload URLs issued by ``create_job`` expire after ``seconds``;
- ``job_fails``: confirmed jobs end FAILED with ``error``;
- ``job_hangs``: confirmed jobs stay PROCESSING forever.

Routes are the names ``create_job``, ``confirm_uploads``, ``get_job``,
``inspect_jobs``, ``inspect_requests``, ``upload`` and ``unmatched``, or
``api`` (every request to the API server but the ``/_sandbox`` routes) or
``any`` (``api`` and every request to the storage). The fault routes
themselves are never faulted, so a test can always clear what it set.
``url_ttl`` acts on ``create_job`` and the two job kinds on
``confirm_uploads``; their route may be left out.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from glossi_watch.sandbox.errors import InvalidFault

Value = TypeVar("Value")

DEFAULT_JOB_ERROR = "Processing failed: simulated failure"
JOBS_API_ROUTES = ("create_job", "confirm_uploads", "get_job")
ROUTES = (*JOBS_API_ROUTES, "inspect_jobs", "inspect_requests", "upload", "unmatched")
TARGETS = (*ROUTES, "api", "any")

# For each kind, its options and whether each is required.
KIND_OPTIONS: dict[str, dict[str, bool]] = {
    "status": {"status": True, "retry_after": False, "retry_after_date_seconds": False},
    "latency": {"seconds": True},
    "reset": {"after_bytes": False},
    "stall": {"seconds": True, "after_bytes": False},
    "bandwidth": {"bytes_per_second": True},
    "html": {},
    "url_ttl": {"seconds": True},
    "job_fails": {"error": False},
    "job_hangs": {},
}
FIXED_ROUTES = {
    "url_ttl": "create_job",
    "job_fails": "confirm_uploads",
    "job_hangs": "confirm_uploads",
}
REQUEST_KINDS = frozenset(KIND_OPTIONS) - frozenset(FIXED_ROUTES)
JOB_KINDS = frozenset({"job_fails", "job_hangs"})
COMMON_FIELDS = ("kind", "route", "count")
NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class FaultSpec:
    """A validated fault: its kind, route, count and the options of its kind.

    Options a kind does not take are None; ``after_bytes`` defaults to 0 and a
    ``job_fails`` fault's ``error`` to :data:`DEFAULT_JOB_ERROR`.
    """

    kind: str
    route: str
    count: int | None = None
    status: int | None = None
    retry_after: str | None = None
    retry_after_date_seconds: float | None = None
    seconds: float | None = None
    after_bytes: int = 0
    bytes_per_second: int | None = None
    error: str | None = None

    def options(self) -> dict[str, object]:
        """The options of this fault's kind, by name, as JSON values."""
        return {name: getattr(self, name) for name in KIND_OPTIONS[self.kind]}


def parse_fault(document: Mapping[str, object]) -> FaultSpec:
    """Check a fault description (the JSON of ``POST /_sandbox/faults``).

    Raises :class:`InvalidFault` with one sentence saying what is wrong and
    what would be valid.
    """
    kind = document.get("kind")
    if not isinstance(kind, str) or kind not in KIND_OPTIONS:
        raise InvalidFault(f"'kind' must be one of {_listing(KIND_OPTIONS)}.")
    accepted = KIND_OPTIONS[kind]
    unknown = sorted(set(document) - set(COMMON_FIELDS) - set(accepted))
    if unknown:
        takes = _listing((*COMMON_FIELDS, *accepted))
        raise InvalidFault(f"A {kind} fault takes {takes}, not {unknown[0]!r}.")
    missing = [name for name, required in accepted.items() if required]
    missing = [name for name in missing if document.get(name) is None]
    if missing:
        raise InvalidFault(f"A {kind} fault needs {missing[0]!r}.")

    given = {name: value for name, value in document.items() if value is not None}
    spec = FaultSpec(
        kind=kind,
        route=_route(kind, document.get("route")),
        count=_optional(given, "count", _count),
        status=_optional(given, "status", _status),
        retry_after=_optional(given, "retry_after", _retry_after),
        retry_after_date_seconds=_optional(given, "retry_after_date_seconds", _seconds),
        seconds=_optional(given, "seconds", _seconds),
        after_bytes=_optional(given, "after_bytes", _byte_count) or 0,
        bytes_per_second=_optional(given, "bytes_per_second", _rate),
        error=_optional(given, "error", _message),
    )
    if spec.retry_after is not None and spec.retry_after_date_seconds is not None:
        raise InvalidFault(
            "Give either 'retry_after' or 'retry_after_date_seconds', not both."
        )
    if kind == "job_fails" and spec.error is None:
        return dataclasses.replace(spec, error=DEFAULT_JOB_ERROR)
    return spec


def parse_fault_text(text: str) -> FaultSpec:
    """Check a command-line fault, ``KIND:ROUTE[:key=value,...]``.

    Values that look like numbers are numbers; anything else is text, so a
    value cannot contain a comma. The route may be empty for the kinds that
    have a fixed one (``url_ttl::seconds=5``, ``job_hangs``).
    """
    kind, _, rest = text.partition(":")
    route, _, option_text = rest.partition(":")
    document: dict[str, object] = {"kind": kind.strip()}
    if route.strip():
        document["route"] = route.strip()

    for item in filter(None, (part.strip() for part in option_text.split(","))):
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise InvalidFault(f"Options are key=value pairs; {item!r} is not one.")
        if name in document:
            raise InvalidFault(f"The option {name!r} is given twice.")
        document[name] = _scalar(value.strip())
    return parse_fault(document)


def _scalar(text: str) -> object:
    if NUMBER.fullmatch(text) is None:
        return text
    number = float(text)
    return int(text) if text.lstrip("-").isdigit() else number


def _listing(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _optional(
    given: Mapping[str, object], name: str, parse: Callable[[str, object], Value]
) -> Value | None:
    return parse(name, given[name]) if name in given else None


def _route(kind: str, route: object) -> str:
    fixed = FIXED_ROUTES.get(kind)
    if fixed is not None:
        if route is None or route == fixed:
            return fixed
        raise InvalidFault(
            f"A {kind} fault acts on {fixed!r}; leave 'route' out or give {fixed!r}."
        )
    if not isinstance(route, str) or route not in TARGETS:
        choices = _listing(TARGETS)
        raise InvalidFault(f"A {kind} fault needs a 'route', one of {choices}.")
    return route


def _integer(name: str, value: object, low: int, high: int | None = None) -> int:
    upper = "" if high is None else f" and at most {high}"
    problem = InvalidFault(f"{name!r} must be a whole number of at least {low}{upper}.")
    if isinstance(value, bool) or not isinstance(value, int):
        raise problem
    if value < low or (high is not None and value > high):
        raise problem
    return value


def _count(name: str, value: object) -> int:
    return _integer(name, value, 1)


def _status(name: str, value: object) -> int:
    return _integer(name, value, 400, 599)


def _byte_count(name: str, value: object) -> int:
    return _integer(name, value, 0)


def _rate(name: str, value: object) -> int:
    return _integer(name, value, 1)


def _seconds(name: str, value: object) -> float:
    number = value if isinstance(value, int | float) else math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise InvalidFault(f"{name!r} must be a number of seconds >= 0.")
    return float(number)


def _retry_after(name: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    if isinstance(value, str) and _is_http_date(value):
        return value.strip()
    raise InvalidFault(
        f"{name!r} must be whole seconds >= 0 or an HTTP date such as "
        "'Wed, 21 Oct 2015 07:28:00 GMT'."
    )


def _is_http_date(text: str) -> bool:
    try:
        email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return False
    return True


def _message(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidFault(f"{name!r} must be a non-empty string.")
    return value
