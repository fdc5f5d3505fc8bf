"""``KafkaSettings``: the ``kafka`` section of the app settings, and the librdkafka configs
derived from it.

Every field has a production default (Redpanda / Apache Kafka); tests shrink the group
timeouts so joins take a second or two. Environment: ``ALPHA_PANDA_KAFKA__<FIELD>``, e.g.
``ALPHA_PANDA_KAFKA__BOOTSTRAP_SERVERS=redpanda:9092``.

Per-service tuning: ``services`` maps a consumer group (or, for the plain producer, the
``service`` name of this process) to raw librdkafka properties applied last, e.g.
``{"strategy_runner": {"fetch.wait.max.ms": 5, "linger.ms": 1}}``. ``librdkafka`` holds raw
properties for every client (security, SASL, ...).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

RawConfig = dict[str, str | int | float | bool]


class KafkaSettings(BaseModel):
    """Connection, producer, consumer and transaction settings, with documented defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = "localhost:9092"
    """Comma-separated ``host:port`` list."""
    client_id: str = "alpha-panda"
    service: str | None = None
    """Name of the service this process runs; selects ``services`` overrides for ``append``."""
    instance_id: str | None = None
    """Stable name of this process (``risk-0``; a pod or container name). Consumers then get
    stable member ids, hence stable ``transactional.id``s: a restarted instance fences the
    zombie it replaces. Unset: ids are unique per process and fencing relies on the group
    generation alone."""

    # ---- producer
    linger_ms: int = Field(5, ge=0)
    """How long the producer waits to fill a batch. Low: every stage adds it to latency."""
    batch_size: PositiveInt = 1_000_000
    """Maximum bytes per partition batch."""
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    acks: Literal["all"] = "all"
    """Only ``all``: a fill acknowledged by one replica can be lost with it."""
    enable_idempotence: bool = True
    delivery_timeout_ms: PositiveInt = 30_000
    """A message not acknowledged in this time fails its ``append`` / ``commit``."""
    queue_max_messages: PositiveInt = 1_000_000

    # ---- consumer
    fetch_min_bytes: PositiveInt = 1
    fetch_max_bytes: PositiveInt = 52_428_800
    max_partition_fetch_bytes: PositiveInt = 1_048_576
    fetch_wait_max_ms: int = Field(10, ge=0)
    """Broker-side wait for ``fetch_min_bytes``; bounds the idle latency of every stage."""
    session_timeout_ms: PositiveInt = 10_000
    """A member silent this long is dropped and its partitions reassigned (tests: ~3000)."""
    heartbeat_interval_ms: PositiveInt = 1_000
    max_poll_interval_ms: PositiveInt = 300_000
    """Longest allowed gap between polls before the member is considered stuck."""
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a new group starts; ``earliest`` so nothing appended before it joined is missed."""

    # ---- transactions and topics
    transactional_id_prefix: str = "alpha-panda."
    """``transactional.id`` = prefix + group + "." + member id: a restarted member fences its
    zombie predecessor."""
    transaction_timeout_ms: PositiveInt = 60_000
    replication_factor: int = Field(-1, ge=-1)
    """For ``ensure_topics``; -1 = the broker's default."""
    operation_timeout_s: float = Field(10.0, gt=0)
    """Timeout of admin calls, transaction steps and flushes."""

    # ---- deduplication of processed ids
    dedup_redis_url: str | None = None
    """``redis://HOST:PORT/DB``: processed ids survive restarts and are shared by a group's
    members. Without it an in-memory window per consumer is used, and redelivery across a
    restart is covered by the transactions alone."""
    dedup_ttl_s: PositiveInt = 7 * 24 * 3600
    dedup_memory_size: PositiveInt = 1_000_000

    librdkafka: RawConfig = {}
    services: dict[str, RawConfig] = {}

    @model_validator(mode="after")
    def _check(self) -> KafkaSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")
        if self.max_poll_interval_ms < self.session_timeout_ms:
            raise ValueError("max_poll_interval_ms must be at least session_timeout_ms")
        return self

    def _common(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers, "client.id": self.client_id,
                **self.librdkafka}

    def producer_config(self, service: str | None = None,
                        transactional_id: str | None = None) -> dict[str, Any]:
        """librdkafka producer properties; transactional when ``transactional_id`` is given."""
        conf: dict[str, Any] = {
            **self._common(),
            "linger.ms": self.linger_ms,
            "batch.size": self.batch_size,
            "compression.type": self.compression,
            "acks": self.acks,
            "enable.idempotence": self.enable_idempotence or transactional_id is not None,
            "delivery.timeout.ms": self.delivery_timeout_ms,
            "queue.buffering.max.messages": self.queue_max_messages,
            # CRC-32 of the key, null keys to one partition: the same placement as the
            # embedded backends' ``partition_for``.
            "partitioner": "consistent",
            # Reports for failed messages only: a delivered one needs no Python call.
            "delivery.report.only.error": True,
        }
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
            conf["transaction.timeout.ms"] = self.transaction_timeout_ms
            # librdkafka requires a message to time out before its transaction does.
            conf["delivery.timeout.ms"] = min(self.delivery_timeout_ms, self.transaction_timeout_ms)
        conf.update(self.services.get(service or self.service or "", {}))
        return conf

    def consumer_config(self, group: str) -> dict[str, Any]:
        """librdkafka consumer properties for a member of ``group`` (manual offsets only)."""
        conf: dict[str, Any] = {
            **self._common(),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.auto_offset_reset,
            "isolation.level": self.isolation_level,
            "fetch.min.bytes": self.fetch_min_bytes,
            "fetch.max.bytes": self.fetch_max_bytes,
            "max.partition.fetch.bytes": self.max_partition_fetch_bytes,
            "fetch.wait.max.ms": self.fetch_wait_max_ms,
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            "max.poll.interval.ms": self.max_poll_interval_ms,
            # Range gives partition p of every co-partitioned topic to the same member, so a
            # member sees whole instruments (ticks, signals, orders): stages can scale out.
            "partition.assignment.strategy": "range",
        }
        conf.update(self.services.get(group, {}))
        return conf

    def transactional_id(self, group: str, member_id: str) -> str:
        return f"{self.transactional_id_prefix}{group}.{member_id}"
