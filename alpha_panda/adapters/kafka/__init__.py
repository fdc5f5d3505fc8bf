"""The Kafka / Redpanda log backend (confluent-kafka). See ``docs/kafka.md``.

Exports are lazy: ``alpha_panda.settings`` imports ``KafkaSettings`` from ``.config``, and
that must not load librdkafka for users of the embedded log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alpha_panda.adapters.kafka.config import KafkaSettings
    from alpha_panda.adapters.kafka.consumer import KafkaConsumer
    from alpha_panda.adapters.kafka.log import KafkaLog

__all__ = ["KafkaConsumer", "KafkaLog", "KafkaSettings"]


def __getattr__(name: str) -> Any:
    if name == "KafkaSettings":
        from alpha_panda.adapters.kafka.config import KafkaSettings

        return KafkaSettings
    if name == "KafkaConsumer":
        from alpha_panda.adapters.kafka.consumer import KafkaConsumer

        return KafkaConsumer
    if name == "KafkaLog":
        from alpha_panda.adapters.kafka.log import KafkaLog

        return KafkaLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
