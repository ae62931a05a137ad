"""Pure HTTP decisions: what a response means, whether to retry, how long to wait, what the rate-limit headers say.

Nothing here does I/O, reads a clock or draws randomness of its own: time and randomness are arguments.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable, Iterable, Mapping

from genesys_closer.worker.genesys.errors import (
    AuthenticationFailed,
    BadRequest,
    Forbidden,
    GenesysError,
    NotFound,
    RateLimited,
    ServerError,
)

MAX_RETRY_AFTER_SECONDS = 3600.0


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if moment is None:
            return None
        seconds = moment.timestamp() - now_epoch
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def error_for_status(status: int) -> type[GenesysError]:
    """The error class for a non-2xx status: 429 and 5xx are retryable, every other status is permanent."""
    if status == 429:
        return RateLimited
    if status >= 500:
        return ServerError
    if status == 401:
        return AuthenticationFailed
    if status == 403:
        return Forbidden
    if status == 404:
        return NotFound
    return BadRequest


def backoff_seconds(
    attempt: int,
    retry_after_seconds: float | None = None,
    *,
    base_seconds: float = 0.5,
    cap_seconds: float = 60.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Full-jitter exponential backoff for retry number ``attempt`` (0 for the first retry).

    ``Retry-After`` is a floor (capped at ``cap_seconds``), with up to one second of jitter added so that a fleet
    told to wait the same time does not return in one herd.
    """
    exponent = min(max(attempt, 0), 30)
    delay = float(rng()) * min(cap_seconds, base_seconds * 2.0**exponent)
    if retry_after_seconds is not None:
        delay = max(delay, min(retry_after_seconds, cap_seconds) + rng())
    return delay


def first_header(headers: Mapping[str, str], names: Iterable[str]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None
