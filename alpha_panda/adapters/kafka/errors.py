"""librdkafka errors turned into Alpha Panda's, with context, at the boundary."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from alpha_panda.domain.errors import (
    AlphaPandaError,
    BrokerUnavailable,
    ConfigurationError,
    InvariantViolation,
    TransientError,
)

_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
_CONFIG = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
           KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaError.INVALID_CONFIG,
           KafkaError._INVALID_ARG, KafkaError.UNKNOWN_TOPIC_OR_PART,
           KafkaError._UNKNOWN_PARTITION, KafkaError.MSG_SIZE_TOO_LARGE}


class BrokerError(BrokerUnavailable):
    """The Kafka broker failed an operation; ``code`` is librdkafka's error code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def kafka_error(exc: KafkaException) -> KafkaError | None:
    """The librdkafka error a ``KafkaException`` carries, if it carries one."""
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def is_fenced(err: KafkaError) -> bool:
    """This producer was replaced by a newer instance with the same transactional id."""
    return err.code() in _FENCED


def classify(err: KafkaError, what: str) -> AlphaPandaError:
    """The Alpha Panda error for a librdkafka error during ``what``."""
    text = f"kafka {what}: {err.str()}"
    code = err.code()
    if code in _FENCED:
        return InvariantViolation(f"{text} (fenced: a newer instance of this member is running)")
    if code in _CONFIG:
        return ConfigurationError(text)
    if err.fatal():
        return InvariantViolation(text)
    if code in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
                KafkaError._MSG_TIMED_OUT, KafkaError.REQUEST_TIMED_OUT):
        return BrokerError(text, code)
    return TransientError(text)


def transaction_error(exc: KafkaException, what: str) -> AlphaPandaError:
    """Classify a failed transaction step. Abortable failures are transient: the
    transaction was (or will be) aborted and nothing of it became visible."""
    err = kafka_error(exc)
    if err is None:
        return TransientError(f"kafka {what}: {exc}")
    if err.txn_requires_abort() and err.code() not in _FENCED:
        return TransientError(f"kafka {what}: {err.str()} (transaction aborted)")
    return classify(err, what)
