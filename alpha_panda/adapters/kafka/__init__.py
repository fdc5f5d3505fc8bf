"""The Kafka / Redpanda log backend (confluent-kafka). See ``docs/kafka.md``."""

from alpha_panda.adapters.kafka.config import KafkaSettings
from alpha_panda.adapters.kafka.consumer import KafkaConsumer
from alpha_panda.adapters.kafka.log import KafkaLog

__all__ = ["KafkaConsumer", "KafkaLog", "KafkaSettings"]
