"""The retry policy: growing, jittered, capped delays that honour Retry-After."""

from __future__ import annotations

import random

from glossi_watch.api import parse_retry_after
from glossi_watch.retry import (
    MAX_DELAY_SECONDS,
    RETRY_AFTER_CEILING_SECONDS,
    backoff_seconds,
    is_transient_status,
)


def test_delays_grow_but_never_pass_the_cap() -> None:
    rng = random.Random(1)

    ceilings = [
        max(backoff_seconds(attempt, rng=rng) for _ in range(200))
        for attempt in range(12)
    ]

    assert ceilings[0] <= 1.0
    assert ceilings[3] > ceilings[0]
    assert max(ceilings) <= MAX_DELAY_SECONDS
    assert ceilings[-1] > MAX_DELAY_SECONDS / 2


def test_full_jitter_spreads_clients_apart() -> None:
    rng = random.Random(2)

    delays = {round(backoff_seconds(6, rng=rng), 3) for _ in range(50)}

    assert len(delays) > 40


def test_retry_after_is_honoured_within_a_ceiling() -> None:
    assert backoff_seconds(0, retry_after=30) >= 30
    assert backoff_seconds(0, retry_after=86400) == RETRY_AFTER_CEILING_SECONDS


def test_retry_after_in_both_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_which_statuses_are_transient() -> None:
    assert all(
        is_transient_status(code) for code in (408, 425, 429, 500, 502, 503, 504)
    )
    assert not any(is_transient_status(code) for code in (200, 301, 400, 401, 404, 409))
