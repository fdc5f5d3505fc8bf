"""The log contract: what every backend (memory, sqlite, kafka) must do identically."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from alpha_panda.stream.log import Log, TopicPartition
from tests.contract.conftest import Opener
from tests.contract.helpers import drain, raw, settle, spec

Names = Callable[[str], str]


async def test_records_of_one_key_keep_their_order_and_partition(log: Log, names: Names) -> None:
    t = names("ordered")
    await log.ensure_topics([spec(t, 4)])
    await log.append([raw(t, f"k{i % 7}".encode(), str(i).encode()) for i in range(300)])
    records = await drain(log.consumer(names("g"), [t]), 300)
    assert len(records) == 300
    by_key: dict[bytes, list[int]] = defaultdict(list)
    partitions: dict[bytes, set[int]] = defaultdict(set)
    for r in records:
        assert r.key is not None
        by_key[r.key].append(int(r.value))
        partitions[r.key].add(r.partition)
    assert all(v == sorted(v) for v in by_key.values())
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1  # keys really spread


async def test_offsets_are_dense_per_partition_and_end_offsets_follow(log: Log,
                                                                     names: Names) -> None:
    t = names("dense")
    await log.ensure_topics([spec(t, 2)])
    await log.append([raw(t, None, b"a", None), raw(t, None, b"b", None)])
    assert await log.end_offsets(t) == {0: 2, 1: 0}
    recs = await log.read(TopicPartition(t, 0), 0, 10)
    assert [(r.offset, r.value) for r in recs] == [(0, b"a"), (1, b"b")]


async def test_ensure_topics_is_idempotent(log: Log, names: Names) -> None:
    t = names("idem")
    await log.ensure_topics([spec(t, 3)])
    await log.ensure_topics([spec(t, 5)])
    assert (await log.list_topics())[t] == 3


async def test_a_group_splits_partitions_and_rebalances(log: Log, names: Names) -> None:
    t, g = names("split"), names("g")
    await log.ensure_topics([spec(t, 4)])
    await log.append([raw(t, f"k{i}".encode(), b"x") for i in range(40)])
    a = log.consumer(g, [t])
    await settle([a], 4)
    b = log.consumer(g, [t])
    await settle([a, b], 4)
    assert a.assignment().isdisjoint(b.assignment())
    await b.close()
    await settle([a], 4)
    assert len(a.assignment()) == 4
    await a.close()


async def test_members_of_a_group_together_see_each_record_once(log: Log, names: Names) -> None:
    t, g = names("once"), names("g")
    await log.ensure_topics([spec(t, 4)])
    a, b = log.consumer(g, [t]), log.consumer(g, [t])
    await settle([a, b], 4)
    await log.append([raw(t, f"k{i}".encode(), str(i).encode()) for i in range(200)])
    got: list[bytes] = []
    for _ in range(40):
        for c in (a, b):
            recs = await c.poll(50, 0.05)
            got.extend(r.value for r in recs)
            await c.commit([], {r.tp: r.offset + 1 for r in recs})
        if len(got) >= 200:
            break
    assert sorted(got, key=int) == [str(i).encode() for i in range(200)]


async def test_groups_are_independent(log: Log, names: Names) -> None:
    t = names("indep")
    await log.ensure_topics([spec(t, 3)])
    await log.append([raw(t, f"k{i}".encode(), b"x") for i in range(30)])
    c1 = log.consumer(names("g1"), [t])
    recs = await drain(c1, 30)
    await c1.commit([], {r.tp: r.offset + 1 for r in recs})
    assert len(await drain(log.consumer(names("g2"), [t]), 30)) == 30


async def test_committed_offsets_survive_a_restart(open_log: Opener, names: Names) -> None:
    t, g = names("durable"), names("g")
    log = await open_log()
    await log.ensure_topics([spec(t, 1)])
    await log.append([raw(t, b"k", str(i).encode()) for i in range(20)])
    c = log.consumer(g, [t])
    recs = await drain(c, 20)
    await c.commit([], {TopicPartition(t, 0): recs[9].offset + 1})
    await c.close()
    await log.close()

    log2 = await open_log()
    assert await log2.committed_offsets(g, t) == {0: 10}
    assert (await log2.end_offsets(t))[0] == 20
    again = await drain(log2.consumer(g, [t]), 10)
    assert [r.value for r in again] == [str(i).encode() for i in range(10, 20)]


async def test_uncommitted_records_are_redelivered_after_a_crash(log: Log, names: Names) -> None:
    t, g = names("redeliver"), names("g")
    await log.ensure_topics([spec(t, 2)])
    await log.append([raw(t, f"k{i}".encode(), str(i).encode()) for i in range(10)])
    first = log.consumer(g, [t])
    assert len(await drain(first, 10)) == 10
    await first.close()  # dies without committing
    second = await drain(log.consumer(g, [t]), 10)
    assert sorted(int(r.value) for r in second) == list(range(10))


async def test_outputs_become_visible_only_with_the_commit(log: Log, names: Names) -> None:
    src, out, g = names("src"), names("out"), names("g")
    await log.ensure_topics([spec(src, 1), spec(out, 1)])
    await log.append([raw(src, b"k", b"1", "in-1")])
    c = log.consumer(g, [src])
    recs = await drain(c, 1)
    assert await log.end_offsets(out) == {0: 0}
    await c.commit([raw(out, b"k", b"derived", "out-1")], {recs[0].tp: 1}, ["in-1"])
    assert await log.end_offsets(out) == {0: 1}
    assert await log.committed_offsets(g, src) == {0: 1}
    assert await c.seen(["in-1", "in-2"]) == {"in-1"}


async def test_a_crash_before_commit_leaves_neither_outputs_nor_offsets(open_log: Opener,
                                                                        names: Names) -> None:
    src, out, g = names("src"), names("out"), names("g")
    log = await open_log()
    await log.ensure_topics([spec(src, 1), spec(out, 1)])
    await log.append([raw(src, b"k", b"1", "in-1")])
    c = log.consumer(g, [src])
    assert len(await drain(c, 1)) == 1
    await log.close()  # the process dies between handling and committing

    log2 = await open_log()
    assert await log2.end_offsets(out) == {0: 0}
    assert await log2.committed_offsets(g, src) == {}
    c2 = log2.consumer(g, [src])
    assert await c2.seen(["in-1"]) == set()
    assert [r.value for r in await drain(c2, 1)] == [b"1"]


async def test_seek_replays_from_an_offset(log: Log, names: Names) -> None:
    t, g = names("seek"), names("g")
    await log.ensure_topics([spec(t, 1)])
    await log.append([raw(t, b"k", str(i).encode()) for i in range(10)])
    c = log.consumer(g, [t])
    assert len(await drain(c, 10)) == 10
    tp = TopicPartition(t, 0)
    assert c.position(tp) == 10
    await c.seek(tp, 4)
    assert [r.value for r in await drain(c, 6)] == [str(i).encode() for i in range(4, 10)]
    assert await log.committed_offsets(g, t) == {}  # seeking commits nothing


async def test_read_outside_any_group(log: Log, names: Names) -> None:
    t = names("read")
    await log.ensure_topics([spec(t, 1)])
    await log.append([raw(t, b"k", str(i).encode(), f"id-{i}") for i in range(5)])
    recs = await log.read(TopicPartition(t, 0), 2, 2)
    assert [(r.offset, r.value, r.header("id")) for r in recs] == [
        (2, b"2", b"id-2"), (3, b"3", b"id-3")]


async def test_close_is_idempotent(open_log: Opener, names: Names) -> None:
    log = await open_log()
    await log.ensure_topics([spec(names("t"), 1)])
    await log.close()
    await type(log).close(log)  # again: shutdown paths (signal + finally) may both close
