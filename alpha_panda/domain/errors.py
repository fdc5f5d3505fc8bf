"""The error hierarchy. Split by what the operator must do.

    AlphaPandaError
    ├── ConfigurationError        bad settings, strategy file or topic layout: fix and restart
    │   └── StrategyConfigError   names the file and the field
    ├── InvariantViolation        a bug or corrupted state: crash the service (crash-only)
    │   └── IllegalTransition     an order moved along an edge its state machine does not have
    ├── ValidationError           bad input (a malformed tick, a bad request): reject it, go on
    │   └── DecodeError           a message that does not decode: poison, goes to the DLQ
    ├── RetryableError            worth trying again, with backoff
    │   ├── TransientError        a hiccup: timeouts, connection resets
    │   ├── BrokerUnavailable     the broker (Kite, Kafka) cannot be reached right now
    │   └── RateLimited           slow down; carries retry_after seconds
    ├── AuthenticationError       session missing or expired: stop live trading, alert a human
    └── StrategyError             a user strategy raised: that strategy is taken out of service

Risk and broker rejections are events with a reason code (SignalRejected, OrderRejected),
never exceptions.
"""

from __future__ import annotations


class AlphaPandaError(Exception):
    """Root of every error Alpha Panda raises on purpose."""


class ConfigurationError(AlphaPandaError):
    """Settings, a strategy file or the topic layout are wrong: fix them and restart."""


class StrategyConfigError(ConfigurationError):
    """A strategy configuration is invalid; the message names the source and the field.
    ``strategy_id``: the id the source claims, when it gets as far as naming one."""

    strategy_id: str | None = None

    def __init__(self, source: str, field: str | None, message: str) -> None:
        self.source = source
        self.field = field
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {message}")


class InvariantViolation(AlphaPandaError):
    """Something that must never happen did: the service stops rather than trade on bad state."""


class IllegalTransition(InvariantViolation):
    """An order status change that the transition table does not allow."""


class ValidationError(AlphaPandaError, ValueError):
    """Input that does not satisfy its schema or rules; rejected with a clear message."""


class DecodeError(ValidationError):
    """Bytes that do not decode to a valid event. Poison: never retried, dead-lettered."""


class RetryableError(AlphaPandaError):
    """A failure worth retrying with backoff."""


class TransientError(RetryableError):
    """A timeout, reset or other hiccup."""


class BrokerUnavailable(RetryableError):
    """The trading broker or the log broker cannot be reached right now."""


class RateLimited(RetryableError):
    """Too many requests; wait ``retry_after`` seconds before trying again."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthenticationError(AlphaPandaError):
    """The broker session is missing, expired or revoked: never retried, a human must log in."""


class StrategyError(AlphaPandaError):
    """A user strategy raised; it is isolated and taken out of service."""

    def __init__(self, strategy_id: str, message: str) -> None:
        self.strategy_id = strategy_id
        super().__init__(f"strategy {strategy_id!r}: {message}")
