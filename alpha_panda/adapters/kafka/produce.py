"""Producing batches of ``Output`` and decoding ``Message`` into ``Record`` (client thread)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from confluent_kafka import KafkaError, Message, Producer

from alpha_panda.adapters.kafka.errors import classify
from alpha_panda.stream.log import Output, Record
from alpha_panda.stream.topics import REGISTRY, partition_for


def produce_all(producer: Producer, outputs: Sequence[Output], timeout: float | None) -> None:
    """Queue every output; with ``timeout``, flush and raise on the first delivery failure.

    Inside a transaction pass ``timeout=None``: ``commit_transaction`` flushes and fails
    (aborting everything) if any message failed.
    """
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for out in outputs:
        if out.partition is None and out.topic in REGISTRY:
            # Our placement (by instrument), not librdkafka's: co-partitioned topics.
            out = replace(out, partition=partition_for(out.key, REGISTRY.partitions(out.topic)))
        while True:
            try:
                if out.partition is None:
                    producer.produce(out.topic, out.value, out.key, headers=list(out.headers),
                                     on_delivery=delivered)
                else:
                    producer.produce(out.topic, out.value, out.key, out.partition,
                                     headers=list(out.headers), on_delivery=delivered)
                break
            except BufferError:
                # Local queue full: let deliveries drain, then try again.
                producer.poll(0.05)
    if timeout is None:
        return
    left = producer.flush(timeout)
    if errors:
        raise classify(errors[0], f"produce ({len(errors)} failed)")
    if left:
        raise classify(KafkaError(KafkaError._MSG_TIMED_OUT),
                       f"flush: {left} messages not acknowledged in {timeout}s")


def to_record(m: Message) -> Record:
    headers = m.headers()
    key, value = m.key(), m.value()
    return Record(
        topic=m.topic() or "",
        partition=m.partition() or 0,
        offset=m.offset() or 0,
        key=key.encode() if isinstance(key, str) else key,
        value=(value.encode() if isinstance(value, str) else value) or b"",
        headers=tuple((h[0], _as_bytes(h[1])) for h in headers) if headers else (),
        timestamp_ms=m.timestamp()[1],
    )


def _as_bytes(v: str | bytes | None) -> bytes:
    if v is None:
        return b""
    return v.encode() if isinstance(v, str) else v
