"""Error policy of the consumer runtime: what each error class means for a message.

- ``RetryableError`` (``TransientError``, ``BrokerUnavailable``, ``RateLimited``): try again
  after an exponential backoff with full jitter (at least ``retry_after`` for
  ``RateLimited``), then dead-letter once the attempts of its class are used up
  (``attempts_for``: ``DEFAULT_RETRY_ATTEMPTS`` unless the processor's settings say otherwise).
- ``AuthenticationError``, ``InvariantViolation``, ``ConfigurationError``: fatal; the
  processor commits what it finished and stops (a human must act).
- anything else (``DecodeError``, ``ValidationError``, an unexpected exception): poison;
  dead-lettered at once, the stream goes on.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from enum import Enum

from alpha_panda.domain.errors import (
    AuthenticationError,
    ConfigurationError,
    InvariantViolation,
    RateLimited,
    RetryableError,
)


class Disposition(Enum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    FATAL = "fatal"


FATAL_ERRORS: tuple[type[BaseException], ...] = (
    AuthenticationError, InvariantViolation, ConfigurationError)


DEFAULT_RETRY_ATTEMPTS: dict[str, int] = {
    "BrokerUnavailable": 10,  # an outage: keep trying for longer (the backoff is capped)
    "RateLimited": 20,  # clears by waiting retry_after
}
"""Per-class attempts; a hiccup (``TransientError``) gets the processor's ``max_attempts``."""


def attempts_for(exc: BaseException, per_class: Mapping[str, int], default: int) -> int:
    """Attempts a message failing with ``exc`` gets: its class's (most specific first in the
    MRO), never fewer than the processor's ``default``."""
    for cls in type(exc).__mro__:
        n = per_class.get(cls.__name__)
        if n is not None:
            return max(n, default)
    return default


def classify(exc: BaseException) -> Disposition:
    """What the runtime does with a message whose handler raised ``exc``."""
    if isinstance(exc, FATAL_ERRORS):
        return Disposition.FATAL
    if isinstance(exc, RetryableError):
        return Disposition.RETRY
    return Disposition.DEAD_LETTER


def backoff_delay(exc: BaseException, attempt: int, base: float, cap: float,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` >= 1 failures so far)."""
    # (the exponent stops growing past any cap: an outage retried until Kite answers passes
    # attempt 1025, where 2 ** 1024 no longer converts to a float)
    ceiling = min(cap, base * (2.0 ** min(attempt - 1, 1000)))
    delay = (rng or random).uniform(ceiling / 2, ceiling)  # jitter keeps retries apart
    if isinstance(exc, RateLimited):
        delay = max(delay, min(cap, exc.retry_after))
    return delay
