"""The runtime over each backend: dead letters and their replay, deduplication, rebuild."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import CODEC, DeadLetter, Envelope
from alpha_panda.stream import dlq
from alpha_panda.stream.log import Log
from alpha_panda.stream.runtime import StreamProcessor
from alpha_panda.stream.topics import dlq_topic
from tests.contract.helpers import Echo, raw, read_all, run_until, spec, tick_output

Names = Callable[[str], str]


async def test_poison_goes_to_the_dlq_and_the_stream_goes_on(log: Log, names: Names) -> None:
    src, out = names("src"), names("out")
    await log.ensure_topics([spec(src, 2), spec(out, 2), spec(dlq_topic(src), 1)])
    await log.append([tick_output(src, 1), raw(src, b"1", b"{not json", "poison-1"),
                      tick_output(src, 2)])
    proc = StreamProcessor(log, name="echo", group=names("g"), topics=[src], handler=Echo(out))
    await run_until(proc, lambda: proc.stats.processed + proc.stats.dead_lettered == 3)

    assert proc.stats.dead_lettered == 1
    assert len(await read_all(log, out)) == 2
    letters = await read_all(log, dlq_topic(src))
    assert len(letters) == 1
    letter = CODEC.decode_as(letters[0].value, DeadLetter).data
    assert (letter.topic, letter.value, letter.error_class) == (src, b"{not json", "DecodeError")
    assert dict(letter.headers)["id"] == b"poison-1"
    assert "dlq replay --topic " + src in letter.replay


async def test_replay_reprocesses_dead_letters_once(log: Log, names: Names) -> None:
    src, out, g = names("src"), names("out"), names("g")
    await log.ensure_topics([spec(src, 1), spec(out, 1), spec(dlq_topic(src), 1)])
    broken = {"on": True}

    def fail(e: Envelope[Any]) -> BaseException | None:
        return ValidationError("price band") if broken["on"] and e.data.last_price > 50_000 else None

    await log.append([tick_output(src, 1), tick_output(src, 2, price=99_000)])
    proc = StreamProcessor(log, name="echo", group=g, topics=[src], handler=Echo(out, fail))
    await run_until(proc, lambda: proc.stats.processed + proc.stats.dead_lettered == 2)
    assert proc.stats.dead_lettered == 1

    listed = await dlq.list_dead_letters(log, src)
    assert [e.letter.offset for e in listed] == [1]
    shown = await dlq.show(log, src, listed[0].offset)
    assert shown.letter.error_class == "ValidationError"

    dry = await dlq.replay(log, src, dry_run=True)
    assert len(dry.replayed) == 1
    assert (await log.end_offsets(src))[0] == 2  # a dry run appends nothing

    broken["on"] = False  # the operator fixed the cause
    result = await dlq.replay(log, src)
    assert len(result.replayed) == 1
    assert (await log.end_offsets(src))[0] == 3
    assert len((await dlq.replay(log, src)).replayed) == 0  # nothing is replayed twice

    proc2 = StreamProcessor(log, name="echo", group=g, topics=[src], handler=Echo(out, fail))
    await run_until(proc2, lambda: proc2.stats.processed == 1)
    assert len(await read_all(log, out)) == 2


async def test_the_same_event_appended_twice_is_processed_once(log: Log, names: Names) -> None:
    src, out = names("src"), names("out")
    await log.ensure_topics([spec(src, 1), spec(out, 1)])
    await log.append([tick_output(src, 1), tick_output(src, 2)])
    await log.append([tick_output(src, 1)])  # a producer re-sent after a reconnect
    handler = Echo(out)
    proc = StreamProcessor(log, name="echo", group=names("g"), topics=[src], handler=handler)
    await run_until(proc, lambda: proc.stats.processed + proc.stats.duplicates == 3)
    assert proc.stats.duplicates == 1
    assert handler.seen == ["tick-1-1", "tick-1-2"]
    assert len(await read_all(log, out)) == 2


async def test_duplicates_are_detected_across_restarts(log: Log, names: Names) -> None:
    src, out, g = names("src"), names("out"), names("g")
    await log.ensure_topics([spec(src, 1), spec(out, 1)])
    await log.append([tick_output(src, 1)])
    first = StreamProcessor(log, name="echo", group=g, topics=[src], handler=Echo(out))
    await run_until(first, lambda: first.stats.processed == 1)
    await log.append([tick_output(src, 1)])
    second = StreamProcessor(log, name="echo", group=g, topics=[src], handler=Echo(out))
    await run_until(second, lambda: second.stats.duplicates == 1)
    assert second.stats.processed == 0
    assert len(await read_all(log, out)) == 1


async def test_a_transient_failure_is_retried_and_processed_once(log: Log, names: Names) -> None:
    from alpha_panda.domain.errors import TransientError
    from alpha_panda.stream.runtime import ProcessorSettings

    src, out = names("src"), names("out")
    await log.ensure_topics([spec(src, 2), spec(out, 2), spec(dlq_topic(src), 1)])
    await log.append([tick_output(src, i, token=i % 3 + 1) for i in range(1, 7)])
    failures = {"left": 2}

    def fail(e: Envelope[Any]) -> BaseException | None:
        if e.id == "tick-2-4" and failures["left"]:
            failures["left"] -= 1
            return TransientError("venue timeout")
        return None

    proc = StreamProcessor(log, name="echo", group=names("g"), topics=[src],
                           handler=Echo(out, fail),
                           settings=ProcessorSettings(backoff_base=0.02, backoff_max=0.1))
    await run_until(proc, lambda: proc.stats.processed == 6)
    assert proc.stats.retried == 2 and proc.stats.dead_lettered == 0
    ids = [CODEC.decode(r.value).id for r in await read_all(log, out)]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert await read_all(log, dlq_topic(src)) == []
