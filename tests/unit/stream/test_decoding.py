"""Shared decoding: one decode per record per process, never a stale or wrong envelope."""

from __future__ import annotations

import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.sqlite_log.tail import TailCache
from alpha_panda.domain.errors import DecodeError
from alpha_panda.domain.events import CODEC, EventCodec
from alpha_panda.stream.decoding import SharedDecoder, decoder_for
from alpha_panda.stream.log import Record
from tests.contract.helpers import tick_output


def _rec(offset: int, n: int, topic: str = "t") -> Record:
    out = tick_output(topic, n)
    return Record(topic, 0, offset, out.key, out.value, out.headers)


def test_a_record_is_decoded_once_and_shared() -> None:
    dec = SharedDecoder(CODEC)
    rec = _rec(0, 1)
    first = dec(rec)
    assert dec(rec) is first  # a second group reading the same record
    assert dec.many([rec, _rec(1, 2)])[0] is first
    assert dec(_rec(1, 2)).id == "tick-1-2"
    assert dec(_rec(0, 1)) is not first  # an equal record read afresh is decoded afresh
    assert _rec(0, 1) == rec  # the kept envelope is no part of the record's equality


def test_undecodable_records_raise_every_time() -> None:
    dec = SharedDecoder(CODEC)
    bad = Record("t", 0, 0, None, b"{oops")
    for _ in range(2):
        with pytest.raises(DecodeError):
            dec(bad)
    with pytest.raises(DecodeError):
        dec.many([_rec(0, 1), bad])


def test_another_codec_never_gets_the_envelope_of_the_first() -> None:
    a, b = SharedDecoder(CODEC), SharedDecoder(EventCodec())
    rec = _rec(0, 1)
    first = a(rec)
    second = b(rec)
    assert second is not first and second == first
    assert b(rec) is not second  # another codec decodes afresh every time
    assert a(rec) is first


def test_each_log_and_codec_has_its_own_decoder() -> None:
    a, b = MemoryLog(), MemoryLog()
    assert decoder_for(a, CODEC, True) is decoder_for(a, CODEC, True)
    assert decoder_for(a, CODEC, True) is not decoder_for(b, CODEC, True)
    assert decoder_for(a, EventCodec(), True) is not decoder_for(a, CODEC, True)


def test_tail_cache_serves_contiguous_records_only() -> None:
    tail = TailCache(per_partition=4)
    tail.add(7, [_rec(i, i) for i in range(3)])
    assert [r.offset for r in tail.get(7, 1, 10) or []] == [1, 2]
    assert tail.get(7, 3, 10) is None  # not there yet
    tail.add(7, [_rec(5, 5)])  # a gap (another writer): start afresh
    assert tail.get(7, 0, 10) is None
    assert [r.offset for r in tail.get(7, 5, 10) or []] == [5]
    tail.add(7, [_rec(i, i) for i in range(6, 20)])
    assert tail.get(7, 5, 1) is None  # trimmed
    assert [r.offset for r in tail.get(7, 19, 10) or []] == [19]
    tail.drop_before(7, 19)
    assert tail.get(7, 18, 1) is None


def test_tail_cache_forgets_records_older_than_its_age_bound() -> None:
    """A long run kept up to 20,000 records per partition whatever their age: a day of
    ``make run`` would have held about a million decoded records. Old ones go now, from
    busy partitions as they grow and from idle ones on ``sweep``; what stays is contiguous
    and ends at the partition's end."""
    tail = TailCache(per_partition=100_000, max_age_ms=1_000)
    busy = [Record("t", 0, i, None, b"", (), timestamp_ms=i * 10) for i in range(1_000)]  # 10 s
    for i in range(0, 1_000, 50):
        tail.add(1, busy[i:i + 50])
    kept = tail.get(1, 0, 10_000) or []
    assert not kept  # offset 0 is long gone
    first = next(i for i in range(1_000) if tail.get(1, i, 1))
    assert tail.get(1, first, 10_000) == busy[first:]  # contiguous, up to the end
    assert busy[-1].timestamp_ms - busy[first].timestamp_ms <= 1_000 + 10 * 256  # old ones went in steps
    tail.add(2, [Record("t", 1, 0, None, b"", (), timestamp_ms=9_000)])  # a quiet partition
    tail.sweep(now_ms=9_500)
    assert tail.get(2, 0, 1) is not None  # young enough
    tail.sweep(now_ms=20_000)
    assert tail.get(2, 0, 1) is None and tail.get(1, 999, 1) is None and len(tail) == 0
    tail.add(2, [Record("t", 1, 1, None, b"", (), timestamp_ms=20_001)])  # starts afresh
    assert [r.offset for r in tail.get(2, 1, 5) or []] == [1]


def test_record_ids_reads_the_id_header_once_and_caches_it() -> None:
    from alpha_panda.stream.records import record_ids

    first = Record("t", 0, 0, None, b"", (("id", b"a1"), ("type", b"x")))
    later = Record("t", 0, 1, None, b"", (("type", b"x"), ("id", b"b2")))
    none = Record("t", 0, 2, None, b"", (("type", b"x"),))
    assert record_ids([first, later, none]) == ["a1", "b2", None]
    assert (first.eid, later.eid, none.eid) == ("a1", "b2", None)
    cached = Record("t", 0, 3, None, b"", (("id", b"header"),), eid="cached")
    assert record_ids([cached]) == ["cached"]  # the cache wins: the header is not read again


def test_decoding_with_a_guess_gives_what_decode_gives_right_guess_or_wrong() -> None:
    from alpha_panda.domain.events import MarketTick, OrderFilled

    tick = tick_output("t", 7).value
    for guess in (MarketTick.EVENT_TYPE, OrderFilled.EVENT_TYPE, None, "no_such_type"):
        assert CODEC.decode_guessing(tick, guess) == CODEC.decode(tick)
    bad_price = tick.replace(b'"last_price":10000', b'"last_price":"x"')
    with pytest.raises(DecodeError) as guessed:
        CODEC.decode_guessing(bad_price, MarketTick.EVENT_TYPE)
    with pytest.raises(DecodeError) as plain:
        CODEC.decode(bad_price)
    assert str(guessed.value) == str(plain.value)
    assert "last_price" in str(guessed.value)


def test_a_topic_of_mixed_types_is_decoded_right_whatever_came_before() -> None:
    from alpha_panda.domain.events import KillSwitchSet, new_envelope
    from alpha_panda.stream.emit import Emit, to_output

    dec = SharedDecoder(CODEC)
    switch = to_output(Emit("t", new_envelope(KillSwitchSet(active=True), id="k-1", ts=5,
                                              source="test", key="paper")))
    recs = [_rec(0, 0), _rec(1, 1), Record("t", 0, 2, switch.key, switch.value, switch.headers),
            _rec(3, 3)]
    events = dec.many(recs)  # guessing "tick" after the first, then wrong on the switch
    assert [type(e.data).__name__ for e in events] == [
        "MarketTick", "MarketTick", "KillSwitchSet", "MarketTick"]
    assert events[2].data == KillSwitchSet(active=True)


async def test_an_appended_envelope_is_handed_to_readers_as_decoded() -> None:
    from alpha_panda.stream.log import Output, TopicPartition
    from tests.contract.helpers import spec, tick

    log = MemoryLog()
    await log.ensure_topics([spec("t", 1)])
    env = tick(1)
    out = tick_output("t", 1)
    await log.append([Output(out.topic, out.key, out.value, out.headers, None, env)])
    rec = (await log.read(TopicPartition("t", 0), 0, 10))[0]
    assert rec.decoded is env and rec.eid is None  # the id is read lazily on a memory log
    assert SharedDecoder(CODEC)(rec) is env
