"""The runtime over each backend: dead letters and their replay, deduplication, rebuild."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alpha_panda.domain.errors import ValidationError
from alpha_panda.domain.events import CODEC, DeadLetter, Envelope
from alpha_panda.stream import dlq
from alpha_panda.stream.log import Log
from alpha_panda.stream.records import REPLAY_FOR
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor
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


async def test_a_replayed_record_goes_only_to_the_services_that_failed_on_it(
        log: Log, names: Names) -> None:
    # Two services read a topic: the engine handled a tick, risk dead-lettered it. The copy
    # `dlq replay` put back reached both, and the engine skipped it only while the tick's id
    # was still in its dedup memory (100,000 ids): a replay after that took an old tick
    # as the latest price, or counted a fill twice. Dedup off stands for that memory gone.
    src, out_e, out_r = names("src"), names("out-e"), names("out-r")
    ge, gr = names("engine"), names("risk")
    await log.ensure_topics([spec(src, 1), spec(out_e, 1), spec(out_r, 1),
                             spec(dlq_topic(src), 1)])
    broken = {"on": True}

    def fail(e: Envelope[Any]) -> BaseException | None:
        return ValidationError("price band") if broken["on"] and e.data.last_price > 50_000 else None

    await log.append([tick_output(src, 1), tick_output(src, 2, price=99_000)])
    forgetful = ProcessorSettings(dedup=False)
    engine = StreamProcessor(log, name="engine", group=ge, topics=[src], handler=Echo(out_e),
                             settings=forgetful)
    await run_until(engine, lambda: engine.stats.processed == 2)
    risk = StreamProcessor(log, name="risk", group=gr, topics=[src], handler=Echo(out_r, fail))
    await run_until(risk, lambda: risk.stats.processed + risk.stats.dead_lettered == 2)
    assert risk.stats.dead_lettered == 1

    broken["on"] = False  # the operator fixed the cause
    assert len((await dlq.replay(log, src)).replayed) == 1
    copy = (await read_all(log, src))[-1]
    assert copy.header("id") == b"tick-1-2" and copy.headers[-1] == (REPLAY_FOR, b"risk")

    again = Echo(out_e)
    engine = StreamProcessor(log, name="engine", group=ge, topics=[src], handler=again,
                             settings=forgetful)
    await run_until(engine, lambda: engine.stats.duplicates == 1)  # passed over, not handled
    assert again.seen == [] and engine.stats.processed == 0
    fixed = Echo(out_r)
    risk = StreamProcessor(log, name="risk", group=gr, topics=[src], handler=fixed)
    await run_until(risk, lambda: risk.stats.processed == 1)
    assert fixed.seen == ["tick-1-2"]
    assert len(await read_all(log, out_e)) == 2 and len(await read_all(log, out_r)) == 2

    # a rebuild (state from the log at start) passes over the copy as the live run did
    rebuilt = Echo(out_e)
    engine = StreamProcessor(log, name="engine", group=ge, topics=[src], handler=rebuilt,
                             settings=forgetful, rebuild=True)
    await run_until(engine, lambda: engine.stats.processed == 0 and bool(rebuilt.seen))
    assert rebuilt.seen == ["tick-1-1", "tick-1-2"]


async def test_a_rebuild_counts_a_replayed_copy_that_passed_live(log: Log, names: Names) -> None:
    # Live, the original failed (dead-lettered) and its replayed copy passed. A rebuild
    # marked the id as seen before handling the original, failed it again, and then passed
    # over the copy as a duplicate: the state rebuilt at start lacked that event.
    src, out, g = names("src"), names("out"), names("g")
    await log.ensure_topics([spec(src, 1), spec(out, 1), spec(dlq_topic(src), 1)])

    def first_time(seen: set[str]) -> Callable[[Envelope[Any]], BaseException | None]:
        def fail(e: Envelope[Any]) -> BaseException | None:
            if e.id == "tick-1-2" and e.id not in seen:
                seen.add(e.id)
                return ValidationError("not yet")
            return None
        return fail

    await log.append([tick_output(src, 1), tick_output(src, 2)])
    proc = StreamProcessor(log, name="echo", group=g, topics=[src],
                           handler=Echo(out, first_time(set())))
    await run_until(proc, lambda: proc.stats.processed + proc.stats.dead_lettered == 2)
    assert len((await dlq.replay(log, src)).replayed) == 1
    live = Echo(out, first_time({"tick-1-2"}))
    proc = StreamProcessor(log, name="echo", group=g, topics=[src], handler=live)
    await run_until(proc, lambda: proc.stats.processed == 1)
    assert live.seen == ["tick-1-2"]

    rebuilt = Echo(out, first_time(set()))
    proc = StreamProcessor(log, name="echo", group=g, topics=[src], handler=rebuilt,
                           rebuild=True)
    await run_until(proc, lambda: bool(rebuilt.seen))
    assert rebuilt.seen == ["tick-1-1", "tick-1-2"]  # as live: each event once


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
