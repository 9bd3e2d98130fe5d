"""Logging: events with fields, JSON off a terminal, and never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from glossi_watch.logs import configure_logging, get_logger, register_secret

SIGNED = (
    "http://127.0.0.1:9/bucket/key.glb?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20261204&X-Amz-Signature=abcdef0123"
)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, json=True)

    get_logger(folder="/hot").info("upload_finished", file="chair.glb", bytes=12)

    event = json.loads(stream.getvalue())
    assert event["event"] == "upload_finished"
    assert (event["folder"], event["file"], event["bytes"]) == ("/hot", "chair.glb", 12)
    assert event["level"] == "info" and event["timestamp"].endswith("Z")


def test_readable_key_value_text_on_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, json=False)

    get_logger().info("job_created", job_id="j-1", files=3)

    line = stream.getvalue()
    assert "job_created" in line and "job_id=j-1" in line and "files=3" in line


def test_levels_below_the_configured_one_are_dropped() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream, json=True)

    get_logger().info("job_progress")
    get_logger().warning("step_retry")

    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == [
        "step_retry"
    ]


def test_secrets_and_signed_queries_never_print() -> None:
    stream = io.StringIO()
    configure_logging("debug", stream=stream, json=True)
    register_secret("glsi_secret_key_123")

    get_logger().error(
        "upload_failed",
        url=SIGNED,
        detail={"note": "key glsi_secret_key_123 refused", "urls": [SIGNED]},
    )
    logging.getLogger("httpx").warning('HTTP Request: PUT %s "403"', SIGNED)

    text = stream.getvalue()
    assert "glsi_secret_key_123" not in text
    assert "X-Amz-" not in text
    assert "/bucket/key.glb" in text  # The path stays: it names no secret.
