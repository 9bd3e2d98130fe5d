"""Logging policy: events with fields on stdout, and never a secret.

Every log line is a structlog event with a stable name (``job_created``,
``upload_finished``) and key-value fields. On a terminal the lines are
readable ``key=value`` text; otherwise (systemd's journal, launchd, a pipe)
each line is one JSON object. :func:`configure_logging` is called once, by the
command-line entry point; library modules only ask for a logger.

Two guards keep secrets out: every value passes :func:`redact`, which drops
the query string of any URL carrying ``X-Amz-`` parameters and replaces any
registered secret (the API key) with ``********``; and the ``httpx`` and
``httpcore`` loggers, which would print request URLs, are held at WARNING and
filtered through the same redaction.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SIGNED_QUERY = re.compile(r"\?[^\s\"'<>]*X-Amz-[^\s\"'<>]*", re.IGNORECASE)
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Make ``value`` (for example the API key) unprintable from now on."""
    if len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` without signed query strings or registered secrets."""
    text = _SIGNED_QUERY.sub("?<signed query removed>", text)
    with _secrets_lock:
        secrets = list(_secrets)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "********")
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def _redact_processor(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {key: _redact_value(value) for key, value in event.items()}


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def configure_logging(
    level: str = "info", *, stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Send structlog events to ``stream`` (stdout) at ``level``."""
    stream = stream or sys.stdout
    as_json = not stream.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(stream)
    handler.addFilter(_RedactingFilter())
    for name in ("httpx", "httpcore"):
        library_logger = logging.getLogger(name)
        library_logger.setLevel(logging.WARNING)
        library_logger.handlers[:] = [handler]
        library_logger.propagate = False


def get_logger(**context: Any) -> Any:
    """A bound structlog logger carrying ``context`` on every event."""
    return structlog.get_logger("glossi_watch").bind(**context)
