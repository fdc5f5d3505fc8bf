"""Producing ``Output``s and reading ``Record``s: placement and headers, without a broker."""

from __future__ import annotations

from typing import Any

from alpha_panda.adapters.kafka.produce import produce_all, record_headers
from alpha_panda.stream.log import Output
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY, partition_for


class RecordingProducer:
    """Stands in for confluent_kafka.Producer: keeps what ``produce`` was given."""

    def __init__(self) -> None:
        self.produced: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.produced.append((args, kwargs))


def test_taxonomy_topics_are_placed_by_instrument_and_others_left_to_the_client() -> None:
    producer = RecordingProducer()
    outputs = [
        Output(MARKET_TICKS, b"738561", b"tick", (("id", b"t-1"), ("type", b"market_tick"))),
        Output(MARKET_TICKS, b"341249", b"tick"),
        Output("custom.topic", b"738561", b"x"),
        Output(MARKET_TICKS, b"738561", b"pinned", partition=0),
    ]
    produce_all(producer, outputs, None)  # type: ignore[arg-type]
    n = REGISTRY.partitions(MARKET_TICKS)
    placed = [(args[0], args[3] if len(args) > 3 else None, kw["headers"])
              for args, kw in producer.produced]
    assert placed == [
        (MARKET_TICKS, partition_for(b"738561", n), [("id", b"t-1"), ("type", b"market_tick")]),
        (MARKET_TICKS, partition_for(b"341249", n), None),
        ("custom.topic", None, None),
        (MARKET_TICKS, 0, None),
    ]
    # Inside a transaction a failed message fails the commit: no callback per message.
    assert all(kw["on_delivery"] is None for _, kw in producer.produced)


def test_record_headers_keep_the_client_tuples_and_turn_missing_values_into_empty_bytes() -> None:
    assert record_headers([("id", b"e-1"), ("seq", b"7")]) == (("id", b"e-1"), ("seq", b"7"))
    assert record_headers([("id", b"e-1"), ("note", None)]) == (("id", b"e-1"), ("note", b""))
    assert record_headers({"id": "e-1"}) == (("id", b"e-1"),)
