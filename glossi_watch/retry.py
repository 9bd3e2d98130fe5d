"""When to try again: the one place that decides retry delays.

Delays grow exponentially with "full jitter" (a random point between zero
and the exponential ceiling), so many daemons recovering from the same outage
do not return in lockstep. A server's ``Retry-After`` is honoured, but never
beyond :data:`RETRY_AFTER_CEILING_SECONDS`, so a bogus header cannot park
work for a day. Work is never failed for being retried often: after the quick
attempts the delay simply stays at the cap until the service recovers.
"""

from __future__ import annotations

import random

BASE_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 300.0
RETRY_AFTER_CEILING_SECONDS = 900.0


def backoff_seconds(
    attempt: int,
    *,
    retry_after: float | None = None,
    base: float = BASE_DELAY_SECONDS,
    cap: float = MAX_DELAY_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before try number ``attempt + 1`` (``attempt`` from 0)."""
    ceiling = min(cap, base * 2 ** min(attempt, 30))
    delay = (rng or random).uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CEILING_SECONDS))
    return delay
