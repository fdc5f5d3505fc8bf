"""The paced replay: every tick, in order, none before it is due, in few appends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.events import CODEC, MarketTick
from alpha_panda.marketdata.files import generate_random_walk, tick_id_prefix
from alpha_panda.services.feed import ReplayFeed, tick_seq
from alpha_panda.stream.log import Output, Record, TopicPartition
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY, partition_for


class CountingLog(MemoryLog):
    """Records when each append happened and the event times of its ticks."""

    def __init__(self) -> None:
        super().__init__()
        self.appends: list[tuple[float, list[int]]] = []

    async def append(self, outputs: Sequence[Output]) -> None:
        await super().append(outputs)
        ts = [CODEC.decode_as(o.value, MarketTick).data.ts for o in outputs]
        self.appends.append((time.monotonic(), ts))


@pytest.mark.parametrize("linger", [0.001, 0.005])
async def test_a_paced_replay_sends_each_tick_once_when_due_and_groups_what_falls_due_together(
        linger: float) -> None:
    n = 3000
    cols = generate_random_walk(n, 5, seed=3)
    # One tick every 100 us of event time: 0.3 s at speed 1.
    cols = replace(cols, ts=cols.ts[0] + np.arange(n, dtype=np.int64) * 100_000)
    log = CountingLog()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    feed = ReplayFeed(log, Path("paced.csv"), speed=1.0, ticks=cols, linger=linger)
    await asyncio.wait_for(feed.run(asyncio.Event()), 10)

    assert feed.done.is_set()
    sent = [ts for _, batch in log.appends for ts in batch]
    assert sent == cols.ts.tolist()  # every tick, once, in file order
    assert feed.paced_from is not None
    wall0, t0 = feed.paced_from
    for at, batch in log.appends:
        assert at >= wall0 + (batch[-1] - t0) / 1e9  # none went out before it was due
    # Appended whatever fell due meanwhile, at most once per linger: not once per tick.
    duration = (cols.ts[-1] - cols.ts[0]) / 1e9
    assert len(log.appends) <= duration / linger + 2
    assert len(log.appends) >= 3  # and paced: not all at once


async def test_a_paced_replay_restarted_mid_file_goes_on_at_once() -> None:
    # one tick a second: resumed at the 3,000th, it must not first wait the 50 minutes
    # already replayed
    n = 3010
    cols = generate_random_walk(n, 5, seed=3)
    cols = replace(cols, ts=cols.ts[0] + np.arange(n, dtype=np.int64) * 1_000_000_000)
    log = CountingLog()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    first = ReplayFeed(log, Path("paced.csv"), speed=None, ticks=cols.slice(0, 3000))
    await first.run(asyncio.Event())  # (the same source: a run stopped at the 3,000th)
    feed = ReplayFeed(log, Path("paced.csv"), speed=100.0, ticks=cols)
    await asyncio.wait_for(feed.run(asyncio.Event()), 5)  # 10 ticks of 1 s at 100x: 0.1 s
    assert feed.done.is_set()
    assert feed.paced_from is not None and feed.paced_from[1] == int(cols.ts[3000])


class CutShortLog(MemoryLog):
    """While ``cutting``, drops what an append sends to ``partition`` from tick ``cut`` on,
    as a Kafka append cut short by the feed's death can (one request per partition)."""

    def __init__(self, partition: int, cut: int) -> None:
        super().__init__()
        self.partition, self.cut, self.cutting = partition, cut, True

    async def append(self, outputs: Sequence[Output]) -> None:
        n = REGISTRY.partitions(MARKET_TICKS)
        await super().append([o for o in outputs if not (
            self.cutting and partition_for(o.key, n) == self.partition
            and int(dict(o.headers)["id"].rsplit(b"-", 1)[1]) >= self.cut)])


async def tick_seqs(log: MemoryLog, source: str) -> dict[int, list[int]]:
    """Per partition of ``market.ticks``, the sequence numbers of ``source``'s ticks in log order."""
    out: dict[int, list[int]] = {}
    for p in range(REGISTRY.partitions(MARKET_TICKS)):
        recs = await log.read(TopicPartition(MARKET_TICKS, p), 0, 100_000)
        out[p] = [seq for r in recs if (seq := tick_seq(r, source)) is not None]
    return out


@pytest.mark.parametrize("speed", [None, 1000.0])
async def test_a_replay_restarted_after_an_append_cut_short_restores_what_it_left_off(
        speed: float | None) -> None:
    n, cut = 3000, 1900
    cols = generate_random_walk(n, 6, seed=5)
    n_parts = REGISTRY.partitions(MARKET_TICKS)
    assert any(partition_for(str(t).encode(), n_parts) == 0 for t in cols.instrument_token[cut:])
    log = CutShortLog(partition=0, cut=cut)
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    # The first run dies in its second append (ticks 1,000-1,999), cut short on partition 0.
    dead = ReplayFeed(log, Path("cut.csv"), batch=1000, ticks=cols.slice(0, 2000))
    await dead.run(asyncio.Event())
    source = dead.publisher.source
    before = await tick_seqs(log, source)
    assert max(before[0]) < cut
    top = max(max(seqs, default=-1) for seqs in before.values())
    log.cutting = False
    feed = ReplayFeed(log, Path("cut.csv"), batch=1000, ticks=cols, speed=speed)
    await asyncio.wait_for(feed.run(asyncio.Event()), 10)

    assert feed.done.is_set()
    placed = await tick_seqs(log, source)
    assert sorted(s for seqs in placed.values() for s in seqs) == list(range(n))  # each once
    for p, seqs in placed.items():
        assert seqs == sorted(seqs), f"partition {p} out of order"
        assert all(partition_for(str(cols.instrument_token[s]).encode(), n_parts) == p
                   for s in seqs)
    # paced from where every partition stopped, not from the first tick restored
    assert speed is None or feed.paced_from is not None and feed.paced_from[1] == int(cols.ts[top + 1])


async def test_a_replay_resumes_where_it_stopped_when_its_ticks_are_behind_other_sources() -> None:
    cols = generate_random_walk(1000, 4, seed=9)
    log = MemoryLog()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    first = ReplayFeed(log, Path("mine.csv"), ticks=cols.slice(0, 600))
    await first.run(asyncio.Event())
    # ticks of another source after them on every partition, deeper than the tail read first
    await ReplayFeed(log, Path("other.csv"), ticks=generate_random_walk(8000, 4, seed=1)).run(
        asyncio.Event())
    await ReplayFeed(log, Path("mine.csv"), ticks=cols).run(asyncio.Event())
    mine = await tick_seqs(log, first.publisher.source)
    assert sorted(s for seqs in mine.values() for s in seqs) == list(range(1000))


async def test_a_replay_restarted_after_retention_emptied_a_partition_sends_nothing_again() -> None:
    # a day later, retention deleted partition 0's segment (other sources' newer ticks kept
    # the others'): what partition 0 lacks was not cut short, and is not sent again
    cols = generate_random_walk(3000, 6, seed=5)
    first = CutShortLog(partition=0, cut=0)
    first.cutting = False
    await first.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    await ReplayFeed(first, Path("old.csv"), batch=1000, ticks=cols.slice(0, 2000)).run(
        asyncio.Event())
    log = CountingLog()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    for p in range(1, REGISTRY.partitions(MARKET_TICKS)):
        recs = await first.read(TopicPartition(MARKET_TICKS, p), 0, 100_000)
        await MemoryLog.append(log, [Output(MARKET_TICKS, r.key, r.value, r.headers, p)
                                     for r in recs])
    kept = await tick_seqs(log, "replay:old.csv")
    top = max(max(seqs, default=-1) for seqs in kept.values())
    await ReplayFeed(log, Path("old.csv"), batch=1000, ticks=cols).run(asyncio.Event())
    sent = sorted(s for _, batch in log.appends for s in batch)
    assert sent == sorted(cols.ts[top + 1:].tolist())


def test_a_ticks_number_is_read_from_its_id_or_from_the_headers_older_ticks_carry() -> None:
    def tick(*headers: tuple[str, bytes]) -> Record:
        return Record(MARKET_TICKS, 0, 0, b"1", b"{}", headers)

    mine = tick_id_prefix("replay:mine.csv")
    assert tick_seq(tick(("id", f"{mine}42".encode()), ("type", b"market_tick")),
                    "replay:mine.csv") == 42
    assert tick_seq(tick(("id", f"{mine}42".encode())), "replay:other.csv") is None
    assert tick_seq(tick(("id", f"{mine}x".encode())), "replay:mine.csv") is None
    assert tick_seq(tick(("type", b"market_tick")), "replay:mine.csv") is None
    # appended before 2026-12-05: a ``source`` and a ``seq`` header (and, before 2026-11-24,
    # a hashed id), which decide
    older = tick(("id", b"9f86d081884c7d65"), ("type", b"market_tick"),
                 ("source", b"replay:mine.csv"), ("seq", b"7"))
    assert tick_seq(older, "replay:mine.csv") == 7
    assert tick_seq(older, "replay:other.csv") is None


async def test_a_replay_resumes_after_ticks_an_older_version_appended_with_seq_headers() -> None:
    # A log written before ticks lost their ``source`` and ``seq`` headers (ids hashed):
    # the replay goes on from the 600th tick, not from the first again.
    cols = generate_random_walk(1000, 4, seed=9)
    log = CountingLog()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    first = MemoryLog()
    await first.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    await ReplayFeed(first, Path("mine.csv"), ticks=cols.slice(0, 600)).run(asyncio.Event())
    for p in range(REGISTRY.partitions(MARKET_TICKS)):
        recs = await first.read(TopicPartition(MARKET_TICKS, p), 0, 100_000)
        await MemoryLog.append(log, [Output(
            MARKET_TICKS, r.key, r.value,
            (("id", f"hashed-{r.offset}-{p}".encode()), ("type", b"market_tick"),
             ("source", b"replay:mine.csv"),
             ("seq", dict(r.headers)["id"].rsplit(b"-", 1)[1])), p) for r in recs])
    await ReplayFeed(log, Path("mine.csv"), ticks=cols).run(asyncio.Event())
    sent = [ts for _, batch in log.appends for ts in batch]
    assert sorted(sent) == sorted(cols.ts[600:].tolist())


@pytest.mark.parametrize("rows", [5000, 2000])
async def test_another_file_of_the_same_name_on_the_same_log_is_refused_not_cut(
        rows: int) -> None:
    # `ticks generate ticks.csv` for one day, replayed; then for another day and replayed
    # on the same data directory: the feed took the second file for the first one resumed
    # and began at its row 3,001 (or, with fewer rows, published nothing and was done), the
    # run's results those of a mix of the two files.
    grown = generate_random_walk(3500, 5, seed=1)
    log = CountingLog()
    await log.ensure_topics([REGISTRY.get(MARKET_TICKS)])
    await ReplayFeed(log, Path("ticks.csv"), ticks=grown.slice(0, 3000)).run(asyncio.Event())
    sent = len(log.appends)
    other = ReplayFeed(log, Path("ticks.csv"), ticks=generate_random_walk(rows, 5, seed=2))
    with pytest.raises(ConfigurationError) as err:
        await other.run(asyncio.Event())
    assert len(log.appends) == sent  # nothing of it published
    assert "ticks.csv: market.ticks holds 3000 ticks of replay:ticks.csv that are not this " \
        "file's" in str(err.value)
    assert "another --data-dir" in str(err.value)
    # the same file (or one that goes on from it, a recording that grew) resumes as before
    same = ReplayFeed(log, Path("ticks.csv"), ticks=grown)
    await same.run(asyncio.Event())
    assert same.done.is_set() and sum(len(b) for _, b in log.appends[sent:]) == 500
