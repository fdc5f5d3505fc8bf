"""Producing batches of ``Output`` and decoding ``Message`` into ``Record`` (client thread).

Both run once per message on the hot path of every service (a tick is produced once and
consumed by four groups), so they avoid per-message Python work that a batch can share:
the partition count of a topic is looked up once per batch, and a record takes the header
tuples the client already built.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import cast

from confluent_kafka import KafkaError, Message, Producer

from alpha_panda.adapters.kafka.errors import classify
from alpha_panda.stream.log import Headers, Output, Record
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

    # In a transaction a failed message fails the commit: no per-message callback (a
    # Python call per message when deliveries are served).
    on_delivery = delivered if timeout is not None else None
    # topic -> its partition count when the taxonomy places it (0: librdkafka places it)
    counts: dict[str, int] = {}
    produce = producer.produce
    for out in outputs:
        partition = out.partition
        if partition is None:
            n = counts.get(out.topic)
            if n is None:
                n = counts[out.topic] = (REGISTRY.partitions(out.topic)
                                         if out.topic in REGISTRY else 0)
            if n:
                # Our placement (by instrument), not librdkafka's: co-partitioned topics.
                partition = partition_for(out.key, n)
        while True:
            try:
                # The client takes headers as a list only.
                headers: list[tuple[str, str | bytes | None]] | None = (
                    list(out.headers) if out.headers else None)
                if partition is None:
                    produce(out.topic, out.value, out.key, headers=headers,
                            on_delivery=on_delivery)
                else:
                    produce(out.topic, out.value, out.key, partition, headers=headers,
                            on_delivery=on_delivery)
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
    """The ``Record`` of a data message (not an error event)."""
    hs = m.headers()
    return Record(m.topic() or "", m.partition() or 0, m.offset() or 0, m.key(),
                  m.value() or b"", record_headers(hs) if hs else (), m.timestamp()[1])


# Headers as the client hands them out: a consumed message's values are bytes or None.
ClientHeaders = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]
_value = itemgetter(1)


def record_headers(hs: ClientHeaders) -> Headers:
    """The client's headers as ``Record.headers`` (a header without value as b"")."""
    if isinstance(hs, dict):
        items = tuple(hs.items())
    else:
        items = tuple(hs)
        # A consumed message's list holds bytes, or None for a header without value:
        # checked without a Python-level loop, this is the per-message path.
        if None not in map(_value, items):
            return cast(Headers, items)
    return tuple((k, v.encode() if isinstance(v, str) else v or b"") for k, v in items)
