"""The dead-letter count ``/metrics`` serves, read from a Kafka log: records counted, not
offsets (each transaction's marker takes one), the same for a fresh reader (a restart)."""

from __future__ import annotations

from collections.abc import Callable

from alpha_panda.adapters.kafka import KafkaLog
from alpha_panda.stream.dlq import DeadLetterCounts
from alpha_panda.stream.log import Output
from alpha_panda.stream.topics import KeyKind, TopicSpec


async def test_dead_letters_are_counted_on_kafka(kafka: KafkaLog,
                                                 names: Callable[[str], str]) -> None:
    topic = names("market.ticks") + ".dlq"
    await kafka.ensure_topics([TopicSpec(topic, 1, KeyKind.ORIGINAL, 86_400_000, None,
                                         dlq=True)])
    letters = DeadLetterCounts(kafka)
    assert (await letters.refresh())[topic] == 0
    for n in (3, 2):  # two appends: on a transactional producer, two markers besides
        await kafka.append([Output(topic, b"k", b"x", (), 0)] * n)
    assert (await letters.refresh())[topic] == 5
    assert (await DeadLetterCounts(kafka).refresh())[topic] == 5
    await kafka.append([Output(topic, b"k", b"x", (), 0)])
    assert (await letters.refresh())[topic] == 6
