"""The dead-letter count ``/metrics`` serves, read from a Kafka log: records counted, not
offsets (each transaction's marker takes one), the same for a fresh reader (a restart)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from alpha_panda.adapters.kafka import KafkaLog
from alpha_panda.stream.dlq import DeadLetterCounts, list_dead_letters
from alpha_panda.stream.log import Output
from alpha_panda.stream.runtime import StreamProcessor
from alpha_panda.stream.topics import KeyKind, TopicSpec, dlq_topic
from tests.contract.helpers import Echo, raw, spec


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



async def test_dlq_list_shows_the_most_recent_letters_asked_for_on_kafka(
        kafka: KafkaLog, names: Callable[[str], str]) -> None:
    """`dlq list --limit N` shows the N most recent letters: on Kafka each transaction's
    marker takes an offset, and a service writes each batch's letters in a transaction of
    its own, so the last N offsets held about N/2 letters (2 of 4 asked for, 6 written)."""
    src, out = names("in"), names("out")
    await kafka.ensure_topics([spec(src, 1), spec(out, 1), spec(dlq_topic(src), 1)])
    proc = StreamProcessor(kafka, name="echo", group=names("g"), topics=[src],
                           handler=Echo(out))
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:
        for n in range(6):  # one batch, one transaction, each
            await kafka.append([raw(src, b"7", b"{oops", f"bad-{n}")])
            deadline = time.monotonic() + 30
            while proc.stats.dead_lettered <= n and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert proc.stats.dead_lettered == 6
    listed = await list_dead_letters(kafka, src, limit=4)
    assert [e.letter.offset for e in listed] == [2, 3, 4, 5]
    assert len(await list_dead_letters(kafka, src, limit=50)) == 6
