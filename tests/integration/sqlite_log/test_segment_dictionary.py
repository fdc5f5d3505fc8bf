"""Small segments (a live feed's few ticks, an order, a fill) are stored compressed with the
zstd dictionary that ships with the package, and every stored form reads back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import zstandard

from alpha_panda.adapters.sqlite_log import SqliteLog, dictionary
from alpha_panda.adapters.sqlite_log.segments import _encode_segment, _SegmentCodec
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.events import CODEC, MarketTick
from alpha_panda.services.feed import TickPublisher
from alpha_panda.stream.log import TopicPartition
from alpha_panda.stream.topics import DAY_MS, MARKET_TICKS, KeyKind, TopicSpec
from tests.contract.helpers import tick_output

_ZSTD = b"\x28\xb5\x2f\xfd"


def _stored(path: Path) -> list[bytes]:
    db = sqlite3.connect(path)
    try:
        return [bytes(r[0]) for r in db.execute("SELECT data FROM segments ORDER BY pos")]
    finally:
        db.close()


def test_the_shipped_dictionary_loads_under_its_own_id() -> None:
    known = dictionary.dictionaries()
    assert known, "no zstd dictionary ships with the package"
    latest = dictionary.current()
    assert latest is not None and latest.dict_id() == max(known)
    assert all(d.dict_id() == i for i, d in known.items())


async def test_a_live_feeds_ticks_are_stored_five_times_smaller_and_read_back(
        tmp_path: Path) -> None:
    """One tick per append, as a live feed writes: each segment holds one tick, under the
    1 KiB from which segments are compressed without a dictionary (stored raw before:
    about 410 bytes a tick, 7 GB a day at the simulator's default rate)."""
    path = tmp_path / "log.sqlite"
    log = SqliteLog(path)
    await log.ensure_topics([TopicSpec(MARKET_TICKS, 1, KeyKind.INSTRUMENT, DAY_MS, None)])
    feed = TickPublisher(log, "sim")
    start = 1_796_269_500_000_000_000
    for n in range(300):
        await feed.publish([MarketTick(instrument_token=408065, last_price=150_000 + 5 * (n % 40),
                                       ts=start + n * 5_000_000, volume=n % 7 + 1)], n)
    await log.close()
    blobs = _stored(path)
    assert len(blobs) == 300
    assert all(b[:4] == _ZSTD for b in blobs)
    assert {zstandard.get_frame_parameters(b).dict_id for b in blobs} == {max(
        dictionary.dictionaries())}
    log = SqliteLog(path, tail_records=0)  # every read from the file
    recs = await log.read(TopicPartition(MARKET_TICKS, 0), 0, 500)
    assert [CODEC.decode(r.value).data.last_price for r in recs] == [
        150_000 + 5 * (n % 40) for n in range(300)]
    raw = sum(len(_encode_segment([(r.key, r.value, r.headers)])) for r in recs)
    assert sum(map(len, blobs)) * 5 < raw  # 382 bytes a tick raw, 71 stored
    await log.close()


def _dict_id(frame: bytes) -> int | None:
    return zstandard.get_frame_parameters(frame).dict_id if frame[:4] == _ZSTD else None


def test_every_stored_form_reads_back() -> None:
    codec = _SegmentCodec()
    shipped = max(dictionary.dictionaries())
    tiny = [(b"k", b"x", ())]
    assert codec.pack(tiny) == _encode_segment(tiny)  # under 64 bytes: nothing to gain
    tick = tick_output("t", 1)
    one = [(tick.key, tick.value, tick.headers)]
    several = one * 12  # a Kite packet's worth: still the dictionary (under 16 KiB)
    replay = one * 100  # a replay's batch: plain zstd
    assert [_dict_id(codec.pack(e)) for e in (tiny, one, several, replay)] == [
        None, shipped, shipped, 0]
    for entries in (tiny, one, several, replay):
        assert codec.unpack(codec.pack(entries)) == entries
    # what logs written before the dictionary hold: small segments raw
    assert codec.unpack(_encode_segment(one)) == one


def _trained(dict_id: int) -> tuple[zstandard.ZstdCompressionDict, list[bytes]]:
    tick = tick_output("t", 1)
    samples = [_encode_segment([(tick.key, tick.value + str(i).encode(), tick.headers)])
               for i in range(400)]
    return zstandard.train_dictionary(4096, samples, dict_id=dict_id), samples


def test_segments_of_an_older_dictionary_read_after_a_newer_one_ships(
        monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = dictionary.dictionaries()
    newer, samples = _trained(max(shipped) + 1)
    before = _SegmentCodec()
    written = before.pack([(b"k", samples[0], ())])
    monkeypatch.setattr(dictionary, "dictionaries", lambda: {**shipped, newer.dict_id(): newer})
    after = _SegmentCodec()
    assert after.unpack(written) == [(b"k", samples[0], ())]
    assert _dict_id(after.pack([(b"k", samples[1], ())])) == newer.dict_id()


def test_a_segment_of_an_unknown_dictionary_is_a_clear_error() -> None:
    foreign, samples = _trained(0x7FFF0001)
    frame = zstandard.ZstdCompressor(dict_data=foreign).compress(samples[0])
    with pytest.raises(ConfigurationError, match="7fff0001.*newer"):
        _SegmentCodec().unpack(frame)
