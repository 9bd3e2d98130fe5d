"""The retry policy, in one place: what is worth retrying, and when.

Transient (tried again, never failing a file): connection errors and
timeouts, HTTP 408, 425, 429 and every 5xx, a 2xx whose body is not the JSON
we expect, and the S3 codes in :data:`TRANSIENT_S3_CODES` (``BadDigest`` is
among them: the next attempt reads the file afresh). Credentials refused
(401/403 from the API) pause the work until the key is accepted. Everything
else is permanent: an API 4xx fails the files concerned with the answer in
their sidecars, and an S3 refusal starts a new job (three times at most).
An expired upload URL is never retried as such: it means a new job.

Delays grow exponentially with "full jitter" (a random point between zero
and the exponential ceiling), so many daemons recovering from the same outage
do not return in lockstep. A server's ``Retry-After`` is honoured, but never
beyond :data:`RETRY_AFTER_CEILING_SECONDS`, so a bogus header cannot park
work for a day. Work is never failed for being retried often: after the quick
attempts the delay simply stays at the cap until the service recovers.
"""

from __future__ import annotations

import random

TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429})
TRANSIENT_S3_CODES = frozenset(
    {
        "RequestTimeout",
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "BadDigest",
        "IncompleteBody",
    }
)
BASE_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 120.0
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


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status is worth the same request again later."""
    return status in TRANSIENT_HTTP_STATUSES or status >= 500
